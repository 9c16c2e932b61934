"""Shared fixtures of the integration tests: the encoder and a slice of the real music catalog."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from ltrr_os.catalog import SourceRow, build_music_catalog, ingest_rows, refresh_lexicon
from ltrr_os.config import LtrrSettings, load_schema
from ltrr_os.embedding import Encoder, load_encoder
from ltrr_os.opensearch import bootstrap

from ..conftest import REPO

MUSIC = load_schema("music")
MUSIC_DIR = REPO.parent / "shared" / "data" / "music"
SLICE_ARTISTS = {
    "Queen",
    "Taylor Swift",
    "AC/DC",
    "Green Day",
    "Bon Jovi",
    "Journey",
    "Europe",
    "The Lumineers",
    "KT Tunstall",
    "Dolly Parton",
    "Beyoncé",
    "Eminem",
}


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return load_encoder()


@pytest.fixture(scope="session")
def music_settings(
    settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> Iterator[LtrrSettings]:
    """A catalog of a dozen well-known artists, every 200th other entity, and two tracks with the
    same title and different popularity, bootstrapped and ingested once per session."""
    own = settings.model_copy(update={"index_prefix": f"{settings.index_prefix}music-"})
    bootstrap(os_client, own, MUSIC)
    catalog = build_music_catalog(MUSIC_DIR)
    chosen = [e for e in catalog.entities if e.get("artist") in SLICE_ARTISTS]
    chosen += catalog.entities[::200]
    twins = [
        {
            "id": f"track:twin-{p}",
            "entity_type": "track",
            "title": "Zebra Crossing Anthem",
            "artist": f"Band {p}",
            "popularity": p / 10,
        }
        for p in (1, 9)
    ]
    rows = [SourceRow("slice", i, entity) for i, entity in enumerate([*chosen, *twins])]
    report = ingest_rows(os_client, own, MUSIC, rows, encoder)
    assert report.rejected == []
    refresh_lexicon(os_client, own, MUSIC)
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*")
