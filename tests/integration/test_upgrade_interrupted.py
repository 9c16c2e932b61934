"""An upgrade stopped at any step (Ctrl-C, SIGTERM, SIGKILL of `ltrr bootstrap`) leaves the live
catalog writable and complete: undone on the spot when the process can, repaired by the next
bootstrap when it cannot."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os.config import LtrrSettings, load_schema
from ltrr_os.embedding import Encoder
from ltrr_os.opensearch import bootstrap

from ..conftest import REPO
from .conftest import load_music

SCHEMAS = REPO / "ltrr_os" / "config" / "schemas"
STEPS = ["blocked", "created", "copying", "copied"]
SIGNALS = ["SIGINT", "SIGTERM", "SIGKILL"]


@pytest.fixture(scope="module")
def catalog(
    settings: LtrrSettings,
    os_client: OpenSearch,
    encoder: Encoder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LtrrSettings, list[Path]]]:
    own = settings.model_copy(
        update={"index_prefix": f"{settings.index_prefix}upgrade-{secrets.token_hex(2)}-"}
    )
    load_music(os_client, own, encoder, {"Queen", "Dolly Parton"})
    # Two versions of the schema, each an upgrade of the other (one more keyword field).
    wider = tmp_path_factory.mktemp("schemas") / "music-wider.toml"
    wider.write_text((SCHEMAS / "music.toml").read_text() + '\n[fields.label]\ntype = "keyword"\n')
    yield own, [wider, SCHEMAS / "music.toml"]
    os_client.indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


def _live(client: OpenSearch, settings: LtrrSettings) -> str:
    return str(next(iter(client.indices.get_alias(name=settings.index_name("catalog")))))


def _writable_and_complete(client: OpenSearch, settings: LtrrSettings, count: int) -> None:
    alias = settings.index_name("catalog")
    client.indices.refresh(index=alias)
    assert client.count(index=alias)["count"] == count
    client.update(
        index=alias,
        id="artist:queen",
        body={"doc": {"popularity_value": 0.99}},
        params={"require_alias": "true"},
    )


@pytest.mark.parametrize("signal_name", SIGNALS)
@pytest.mark.parametrize("step", STEPS)
def test_an_interrupted_upgrade_leaves_the_live_catalog_writable_and_complete(
    step: str,
    signal_name: str,
    catalog: tuple[LtrrSettings, list[Path]],
    os_client: OpenSearch,
) -> None:
    settings, schemas = catalog
    alias = settings.index_name("catalog")
    os_client.indices.refresh(index=alias)
    count = os_client.count(index=alias)["count"]
    before = _live(os_client, settings)
    mapped = os_client.indices.get_mapping(index=before)[before]["mappings"]["properties"]
    target = schemas[1] if "label" in mapped else schemas[0]
    child = subprocess.run(
        [sys.executable, "-m", "tests.integration._interrupt", step, signal_name, str(target)],
        cwd=REPO,
        env={
            **os.environ,
            "LTRR_OPENSEARCH_URL": settings.opensearch_url,
            "LTRR_INDEX_PREFIX": settings.index_prefix,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode != 0, child.stdout
    assert "Traceback" not in child.stderr, child.stderr[-3000:]
    assert _live(os_client, settings) == before  # the alias never moved
    if signal_name != "SIGKILL":  # undone on the spot: writable, no partial copy
        _writable_and_complete(os_client, settings, count)
        versions = os_client.indices.get(index=f"{alias}_v*", expand_wildcards="all")
        assert max(versions) == before
    done = bootstrap(os_client, settings, load_schema(str(target)))
    assert _live(os_client, settings) != before
    _writable_and_complete(os_client, settings, count)
    assert bootstrap(os_client, settings, load_schema(str(target))) == []
    repaired = any("repair an interrupted upgrade" in line for line in done)
    assert repaired == (signal_name == "SIGKILL")
