"""Ingest on a real node: rejected rows reported, idempotent re-runs, learned memory kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os.catalog import SourceRow, ingest_rows, read_rows
from ltrr_os.config import LtrrSettings, load_schema
from ltrr_os.embedding import Encoder
from ltrr_os.evaluation import read_cranfield, write_documents
from ltrr_os.memory import MemoryBatch, MemoryUpdate, apply_memory
from ltrr_os.opensearch import bootstrap

from ..conftest import REPO

DOCUMENTS = load_schema("documents")
CRANFIELD = REPO.parent / "shared" / "data" / "ir" / "cranfield"
NOW = datetime.now(UTC)


@pytest.fixture
def docs_settings(settings: LtrrSettings, os_client: OpenSearch) -> Iterator[LtrrSettings]:
    own = settings.model_copy(update={"index_prefix": f"{settings.index_prefix}docs-"})
    bootstrap(os_client, own, DOCUMENTS)
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*")


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def doc(doc_id: str, title: str, **extra: object) -> str:
    return json.dumps({"id": doc_id, "title": title, **extra})


def test_good_rows_are_ingested_and_bad_ones_reported_by_file_and_line(
    os_client: OpenSearch, docs_settings: LtrrSettings, encoder: Encoder, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            doc("1", "Wing flutter at supersonic speed", body="flutter of wings"),
            "{broken",
            doc("3", ""),
            doc("4", "Heat transfer in boundary layers", author="Smith, J.", colour="red"),
            json.dumps({"id": "5", "title": "x" * 5000}),
        ],
    )
    report = ingest_rows(os_client, docs_settings, DOCUMENTS, read_rows(path), encoder)
    assert (report.read, report.indexed) == (5, 2)
    assert [(r.line, r.reason.split(":")[0]) for r in report.rejected] == [
        (2, "invalid JSON"),
        (3, "missing required field 'title'"),
        (5, "field 'title' is 5000 characters long (limit 2000)"),
    ]
    assert all(r.file == str(path) for r in report.rejected)
    assert report.ignored_fields == ["colour"]
    alias = docs_settings.index_name("catalog")
    stored = os_client.get(index=alias, id="4")["_source"]
    assert stored["author"] == "Smith, J."
    assert len(stored["embedding"]) == 384
    assert stored["sources"] == ["docs.jsonl:4"]
    hits = os_client.search(index=alias, body={"query": {"match": {"body": "flutters"}}})
    assert [h["_id"] for h in hits["hits"]["hits"]] == ["1"]


def test_reingest_is_idempotent_and_keeps_learned_memory(
    os_client: OpenSearch, docs_settings: LtrrSettings, encoder: Encoder, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [doc("1", "Boundary layers"), doc("2", "Shocks")])
    ingest_rows(os_client, docs_settings, DOCUMENTS, read_rows(path), encoder)
    alias = docs_settings.index_name("catalog")
    os_client.update(
        index=alias, id="1", body={"doc": {"q2e": {"laminar flow": 3.5}}}, refresh=True
    )
    path = write_jsonl(
        tmp_path / "docs.jsonl", [doc("1", "Boundary layers revisited"), doc("2", "Shocks")]
    )
    report = ingest_rows(os_client, docs_settings, DOCUMENTS, read_rows(path), encoder)
    assert (report.indexed, report.rejected) == (2, [])
    assert os_client.count(index=alias)["count"] == 2
    stored = os_client.get(index=alias, id="1")["_source"]
    assert stored["title"] == "Boundary layers revisited"
    assert stored["q2e"] == {"laminar flow": 3.5}
    assert stored["q2e_prior"] == {"boundary layers revisited": 1.0}


def test_cranfield_documents_are_searchable_by_every_route(
    os_client: OpenSearch, docs_settings: LtrrSettings, encoder: Encoder, tmp_path: Path
) -> None:
    collection = read_cranfield(CRANFIELD)
    path = tmp_path / "cranfield.jsonl"
    write_documents(path, collection.documents[:60])
    report = ingest_rows(os_client, docs_settings, DOCUMENTS, read_rows(path), encoder)
    assert (report.indexed, report.rejected) == (60, [])
    alias = docs_settings.index_name("catalog")
    lexical = os_client.search(
        index=alias,
        body={
            "query": {
                "multi_match": {"query": "propeller slipstream", "fields": ["title^2", "body"]}
            }
        },
    )
    assert lexical["hits"]["hits"][0]["_id"] == "1"
    vector = encoder.encode_one("wing in a propeller slipstream")
    dense = os_client.search(
        index=alias, body={"size": 3, "query": {"knn": {"embedding": {"vector": vector, "k": 3}}}}
    )
    assert "1" in [h["_id"] for h in dense["hits"]["hits"]]
    memory = os_client.search(
        index=alias,
        body={
            "query": {
                "rank_feature": {
                    "field": "q2e_prior.experimental investigation of the aerodynamics of a "
                    "wing in a slipstream"
                }
            }
        },
    )
    assert memory["hits"]["hits"][0]["_id"] == "1"


def test_cli_exit_code_says_whether_anything_was_rejected(
    docs_settings: LtrrSettings, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "OPENSEARCH_URL": docs_settings.opensearch_url,
        "LTRR_INDEX_PREFIX": docs_settings.index_prefix,
    }
    clean = write_jsonl(tmp_path / "clean.jsonl", [doc("1", "Good")])
    dirty = write_jsonl(tmp_path / "dirty.jsonl", [doc("2", "Good"), "nope"])

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ltrr_os", "ingest", str(path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    assert run(clean).returncode == 0
    result = run(dirty)
    assert result.returncode == 1
    assert f"rejected {dirty}:2: invalid JSON" in result.stderr


def test_re_ingest_makes_an_entity_what_the_input_says_and_keeps_its_memory(
    os_client: OpenSearch, docs_settings: LtrrSettings, encoder: Encoder, tmp_path: Path
) -> None:
    catalog = docs_settings.index_name("catalog")
    first = write_jsonl(
        tmp_path / "first.jsonl",
        [doc("d1", "Shock waves", body="oblique shock waves on cones", author="Smith, J.")],
    )
    ingest_rows(os_client, docs_settings, DOCUMENTS, read_rows(first), encoder)
    batch = MemoryBatch()
    batch.add(MemoryUpdate(entity_id="d1", query="cone shocks", weight=1.0, timestamp=NOW))
    apply_memory(os_client, docs_settings, batch, 1, NOW)
    learned = os_client.get(index=catalog, id="d1")["_source"]["q2e"]
    second = write_jsonl(
        tmp_path / "second.jsonl", [doc("d1", "Shock waves", body="heat flux in nozzles")]
    )
    ingest_rows(os_client, docs_settings, DOCUMENTS, read_rows(second), encoder)
    stored = os_client.get(index=catalog, id="d1")["_source"]
    assert "author" not in stored  # removed from the input: removed from the entity
    assert stored["body"] == "heat flux in nozzles"
    assert stored["q2e"] == learned  # what the learner wrote stays
    os_client.indices.refresh(index=catalog)
    old_body = {"query": {"match": {"body": "oblique cones"}}}
    assert os_client.count(index=catalog, body=old_body)["count"] == 0


def test_an_id_repeated_in_one_run_ends_as_its_last_row(
    os_client: OpenSearch,
    docs_settings: LtrrSettings,
    encoder: Encoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new entity is created outright and its repeats (in the same batch or a later one) are
    upserted after it, in the order of the input."""
    monkeypatch.setattr("ltrr_os.catalog._ingest.ENCODE_BATCH", 2)
    rows = [
        doc("d1", "First take"),
        doc("d2", "Other"),
        doc("d1", "Second take"),
        doc("d3", "Another"),
        doc("d4", "Early"),
        doc("d4", "Late"),
        doc("d1", "Third take", author="Jones, K."),
    ]
    report = ingest_rows(
        os_client,
        docs_settings,
        DOCUMENTS,
        read_rows(write_jsonl(tmp_path / "r.jsonl", rows)),
        encoder,
    )
    assert (report.indexed, report.rejected) == (7, [])
    catalog = docs_settings.index_name("catalog")
    assert os_client.count(index=catalog)["count"] == 4
    first = os_client.get(index=catalog, id="d1")["_source"]
    assert (first["title"], first["author"]) == ("Third take", "Jones, K.")
    assert os_client.get(index=catalog, id="d4")["_source"]["title"] == "Late"


def test_two_ingests_of_the_same_new_entities_at_once_store_each_once(
    os_client: OpenSearch, docs_settings: LtrrSettings, encoder: Encoder, tmp_path: Path
) -> None:
    """Both see the entities as new; whichever create comes second is refused and sent again as
    an upsert, which leaves the same entity: nothing rejected, nothing stored twice."""
    path = write_jsonl(tmp_path / "same.jsonl", [doc(f"d{n}", f"Title {n}") for n in range(300)])
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(
            pool.map(
                lambda _: ingest_rows(
                    os_client, docs_settings, DOCUMENTS, read_rows(path), encoder
                ),
                range(2),
            )
        )
    assert [(r.indexed, r.rejected) for r in reports] == [(300, []), (300, [])]
    catalog = docs_settings.index_name("catalog")
    assert os_client.count(index=catalog)["count"] == 300
    assert os_client.get(index=catalog, id="d7")["_source"]["title"] == "Title 7"


def test_an_interrupted_ingest_stops_its_bulk_streams(
    os_client: OpenSearch,
    docs_settings: LtrrSettings,
    encoder: Encoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while rows are read reaches the caller, and no sending thread is left behind."""
    monkeypatch.setattr("ltrr_os.catalog._ingest.ENCODE_BATCH", 4)
    before = set(threading.enumerate())

    def rows() -> Iterator[SourceRow]:
        for n in range(40):
            if n == 30:
                raise KeyboardInterrupt
            yield SourceRow("interrupted", n + 1, {"id": f"i{n}", "title": f"Title {n}"})

    with pytest.raises(KeyboardInterrupt):
        ingest_rows(os_client, docs_settings, DOCUMENTS, rows(), encoder)
    assert set(threading.enumerate()) <= before
    os_client.indices.refresh(index=docs_settings.index_name("catalog"))
    assert 0 < os_client.count(index=docs_settings.index_name("catalog"))["count"] <= 30
