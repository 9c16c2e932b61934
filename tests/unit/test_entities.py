from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from ltrr_os.catalog import RowError, prepare_entity
from ltrr_os.config import load_schema

MUSIC = load_schema("music")
DOCUMENTS = load_schema("documents")


def track(**extra: Any) -> dict[str, Any]:
    return {
        "id": "track:x",
        "entity_type": "track",
        "title": "Basket Case",
        "artist": "Green Day",
        **extra,
    }


def test_a_complete_track_becomes_a_document_with_memory_priors() -> None:
    doc = prepare_entity(
        MUSIC,
        track(genre="punk|rock", year="1994", popularity="0.8", era=["1990s"]),
        "tracks.csv:2",
    )
    assert doc["genre"] == ["punk", "rock"]
    assert doc["year"] == 1994
    assert (doc["popularity"], doc["popularity_value"]) == (0.8, 0.8)
    assert doc["sources"] == ["tracks.csv:2"]
    assert doc["q2e_prior"]["basket case"] == 1.0
    assert doc["q2e_prior"]["green day basket case"] == 1.0
    assert doc["q2e_prior"]["1990s punk"] == pytest.approx(0.16)
    assert "Green Day Basket Case" in doc["predicted_queries"]
    assert "embedding" not in doc


def test_zero_popularity_is_kept_as_a_value_but_not_as_a_rank_feature() -> None:
    doc = prepare_entity(MUSIC, track(popularity=0), "f:1")
    assert doc["popularity_value"] == 0.0
    assert "popularity" not in doc


def test_single_entity_type_schema_defaults_the_type() -> None:
    doc = prepare_entity(DOCUMENTS, {"id": "1", "title": "Wings"}, "docs.jsonl:1")
    assert doc["entity_type"] == "document"


def _int8(values: list[int]) -> str:
    return base64.b64encode(bytes(v & 0xFF for v in values)).decode()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"entity_type": "track", "title": "t"}, "missing id"),
        ({"id": " ", "entity_type": "track", "title": "t"}, "missing id"),
        ({"id": "a\x01b", "entity_type": "track", "title": "t"}, "control characters"),
        ({"id": "x" * 600, "entity_type": "track", "title": "t"}, "512 bytes"),
        ({"id": "1", "entity_type": "podcast", "title": "t"}, "entity_type must be one of"),
        ({"id": "1", "entity_type": "track"}, "missing required field 'title'"),
        (track(title="x" * 2001), "characters long"),
        (track(year="nineteen"), "not a number"),
        (track(year="1994.5"), "not a 32-bit integer"),
        (track(energy=math.nan), "not a finite number"),
        (track(energy="inf"), "not a finite number"),
        (track(popularity="2"), "between 0 and 1"),
        (track(genre=[{"a": 1}]), "not text"),
        (track(genre="|".join(f"g{i}" for i in range(30))), "limit 20"),
        (track(title={"nested": "dict"}), "must be text"),
        (track(embedding=[1.0, 2.0]), "list of 384 numbers"),
        (track(embedding=[0.0] * 384), "zero vector"),
        (track(embedding=[float("nan")] * 384), "not a finite number"),
        (track(embedding_int8="!!", embedding_scale=0.01), "not valid base64"),
        (track(embedding_int8=_int8([1] * 10), embedding_scale=0.01), "384 bytes, not 10"),
        (track(embedding_int8=_int8([1] * 384)), "embedding_scale must be"),
        (track(embedding_int8=_int8([1] * 384), embedding_scale=-1), "embedding_scale must be"),
        (track(embedding_int8=_int8([0] * 384), embedding_scale=0.01), "zero vector"),
        (track(embedding_int8=12, embedding_scale=0.01), "base64 text"),
    ],
)
def test_bad_rows_are_refused_with_a_reason(row: dict[str, Any], message: str) -> None:
    with pytest.raises(RowError, match=message):
        prepare_entity(MUSIC, row, "f:1")


def test_a_precomputed_embedding_is_kept() -> None:
    vector = [0.5] * 384
    assert prepare_entity(MUSIC, track(embedding=vector), "f:1")["embedding"] == vector


def test_an_int8_embedding_with_its_scale_is_the_vector_it_encodes() -> None:
    values = [(-1) ** i * (i % 128) for i in range(384)]
    row = track(embedding_int8=_int8(values), embedding_scale=0.5)
    assert prepare_entity(MUSIC, row, "f:1")["embedding"] == [v * 0.5 for v in values]
