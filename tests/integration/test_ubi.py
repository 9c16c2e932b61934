"""UBI both ways, on a real node: ltrr-os writes what UBI tools read (the UBI dashboard's own
aggregations run on its data), sets up next to the UBI plugin without touching its indices, and
learns from UBI events other tools wrote."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from ltrr_os import LTRRClient
from ltrr_os.cli import app
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.feedback import ubi_time
from ltrr_os.learning import Learner, LearnerConfig
from ltrr_os.opensearch import bootstrap

from ..unit._ubi_schema import EVENT, QUERY
from .conftest import MUSIC, stored_versions
from .test_client import _memory

SHARED = ("ubi_queries", "ubi_events")

# The field names and types the UBI plugin (2.19) gives the indices it creates.
PLUGIN_MAPPINGS: dict[str, dict[str, Any]] = {
    "ubi_queries": {
        "dynamic": False,
        "properties": {
            "timestamp": {"type": "date", "format": "strict_date_time"},
            "query_id": {"type": "keyword"},
            "query": {"type": "text"},
            "query_response_id": {"type": "keyword"},
            "query_response_hit_ids": {"type": "keyword"},
            "user_query": {"type": "keyword"},
            "query_attributes": {"type": "flat_object"},
            "client_id": {"type": "keyword"},
            "application": {"type": "keyword"},
        },
    },
    "ubi_events": {
        "properties": {
            "application": {"type": "keyword"},
            "action_name": {"type": "keyword"},
            "client_id": {"type": "keyword"},
            "query_id": {"type": "keyword"},
            "message": {"type": "keyword"},
            "message_type": {"type": "keyword"},
            "user_query": {"type": "keyword"},
            "timestamp": {"type": "date", "format": "strict_date_time"},
            "event_attributes": {
                "properties": {
                    "position": {"properties": {"ordinal": {"type": "integer"}}},
                    "object": {
                        "properties": {
                            "object_id": {"type": "keyword"},
                            "object_id_field": {"type": "keyword"},
                        }
                    },
                }
            },
        }
    },
}


@pytest.fixture
def own(settings: LtrrSettings, os_client: OpenSearch, tmp_path: Path) -> Iterator[LtrrSettings]:
    prefix = f"{settings.index_prefix}ubi-{secrets.token_hex(2)}-"
    yield settings.model_copy(update={"index_prefix": prefix, "spool_dir": tmp_path / "spool"})
    os_client.indices.delete(index=f"{prefix}*", expand_wildcards="all")


def _shared_names_free(os_client: OpenSearch) -> None:
    for name in SHARED:
        if os_client.indices.exists(index=name):
            pytest.skip(f"{name} already exists on this node (another deployment's)")


@pytest.fixture
def plugin_indices(os_client: OpenSearch) -> Iterator[None]:
    """The UBI plugin's indices, created first, as the plugin does when it initialises."""
    _shared_names_free(os_client)
    for name, mappings in PLUGIN_MAPPINGS.items():
        os_client.indices.create(index=name, body={"mappings": mappings})
    yield
    os_client.indices.delete(index=",".join(SHARED), ignore_unavailable=True)


def _members(os_client: OpenSearch, name: str) -> set[str]:
    if not os_client.indices.exists_alias(name=name):
        return set()
    return set(os_client.indices.get_alias(name=name))


def test_bootstrap_next_to_the_ubi_plugin_neither_fails_nor_touches_its_indices(
    os_client: OpenSearch, own: LtrrSettings, plugin_indices: None
) -> None:
    asked = own.model_copy(update={"ubi_shared_aliases": True})
    before = {name: os_client.indices.get(index=name)[name]["mappings"] for name in SHARED}
    done = bootstrap(os_client, asked, MUSIC)
    assert [line for line in done if "not joining" in line] == [
        f"not joining the shared read alias {name}: an index of that name exists (the UBI "
        f"plugin's?) and is left alone; UBI tools can read {own.index_name(name)}"
        for name in SHARED
    ]
    for name in SHARED:
        assert not os_client.indices.exists_alias(name=name)
        assert os_client.indices.get(index=name)[name]["mappings"] == before[name]
        found = os_client.indices.get_alias(index=own.index_name(name))
        assert {index: set(body["aliases"]) for index, body in found.items()} == {
            f"{own.index_name(name)}_v1": {own.index_name(name)}
        }
    # Nothing else is left to do: the notices are all a second run says.
    assert all("not joining" in line for line in bootstrap(os_client, asked, MUSIC))


def test_the_shared_aliases_are_joined_only_when_asked_and_left_when_not(
    os_client: OpenSearch, own: LtrrSettings
) -> None:
    _shared_names_free(os_client)
    bootstrap(os_client, own, MUSIC)
    for name in SHARED:
        assert f"{own.index_name(name)}_v1" not in _members(os_client, name)
    asked = own.model_copy(update={"ubi_shared_aliases": True})
    assert sorted(line for line in bootstrap(os_client, asked, MUSIC)) == [
        f"add {own.index_name(name)}_v1 to the shared read alias {name}" for name in sorted(SHARED)
    ]
    for name in SHARED:
        assert f"{own.index_name(name)}_v1" in _members(os_client, name)
    assert bootstrap(os_client, asked, MUSIC) == []
    assert len(bootstrap(os_client, own, MUSIC)) == 2  # no longer asked: it leaves them
    for name in SHARED:
        assert f"{own.index_name(name)}_v1" not in _members(os_client, name)


@pytest.fixture
def logged(
    music_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder, tmp_path: Path
) -> dict[str, Any]:
    """Three searches and three events through the client, delivered to the UBI indices."""
    settings = music_settings.model_copy(update={"spool_dir": tmp_path / "spool"})
    tag = secrets.token_hex(3)
    with LTRRClient(settings, opensearch=os_client, encoder=encoder) as ltrr:
        queen = [ltrr.search(f"queen {tag}", limit=5) for _ in range(2)]
        jolene = ltrr.search(f"jolene {tag}", limit=5)
        ltrr.feedback(
            [
                {
                    "search_id": queen[0].search_id,
                    "action": "click",
                    "object_id": queen[0].results[1].id,
                    "position": 2,
                },
                {
                    "search_id": jolene.search_id,
                    "action": "click",
                    "object_id": jolene.results[0].id,
                    "position": 1,
                },
                {
                    "search_id": jolene.search_id,
                    "action": "playback",
                    "object_id": jolene.results[0].id,
                },
            ]
        )
        ltrr.flush()
    for name in SHARED:
        os_client.indices.refresh(index=settings.index_name(name))
    ids = [queen[0].search_id, queen[1].search_id, jolene.search_id]
    return {"settings": settings, "tag": tag, "ids": ids}


def _search(os_client: OpenSearch, index: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(os_client.search(index=index, body={"size": 0, **body}))


def test_the_ubi_dashboards_aggregations_run_on_ltrr_os_data(
    os_client: OpenSearch, logged: dict[str, Any]
) -> None:
    """The stock UBI dashboard's visualisations, as the queries they send."""
    settings: LtrrSettings = logged["settings"]
    queries, events = settings.index_name("ubi_queries"), settings.index_name("ubi_events")
    ours = {"terms": {"query_id": logged["ids"]}}
    common = _search(
        os_client,
        queries,
        {
            "query": ours,
            "aggs": {
                "most_common_queries": {"terms": {"field": "user_query", "size": 100}},
                "most_common_results": {"terms": {"field": "query_response_hit_ids"}},
                "over_time": {"date_histogram": {"field": "timestamp", "calendar_interval": "1d"}},
            },
        },
    )["aggregations"]
    tag = logged["tag"]
    counts = {b["key"]: b["doc_count"] for b in common["most_common_queries"]["buckets"]}
    assert counts == {f"queen {tag}": 2, f"jolene {tag}": 1}
    assert common["most_common_results"]["buckets"]
    assert sum(b["doc_count"] for b in common["over_time"]["buckets"]) == 3
    # Scripted fields of the dashboard's index pattern: day of week, hour, number of results.
    scripted = {
        "day_of_week": "doc['timestamp'].value.getDayOfWeekEnum()"
        ".getDisplayName(TextStyle.FULL, Locale.ROOT)",
        "hour": "doc['timestamp'].value.getHour()",
        "number_of_results": "doc['query_response_hit_ids'].length",
    }
    for name, source in scripted.items():
        found = _search(
            os_client,
            queries,
            {
                "query": ours,
                "aggs": {name: {"terms": {"script": {"lang": "painless", "source": source}}}},
            },
        )["aggregations"][name]["buckets"]
        assert sum(b["doc_count"] for b in found) == 3, name
    clicks = _search(
        os_client,
        events,
        {
            "query": {
                "bool": {
                    "filter": [
                        {"match_phrase": {"action_name": "click"}},
                        {"terms": {"query_id": logged["ids"]}},
                    ]
                }
            },
            "aggs": {
                "histogram": {"terms": {"field": "event_attributes.position.ordinal"}},
                "average": {"avg": {"field": "event_attributes.position.ordinal"}},
            },
        },
    )["aggregations"]
    assert {b["key"]: b["doc_count"] for b in clicks["histogram"]["buckets"]} == {1: 1, 2: 1}
    assert clicks["average"]["value"] == 1.5


def test_stored_searches_and_events_validate_against_the_ubi_schemas(
    os_client: OpenSearch, logged: dict[str, Any]
) -> None:
    settings: LtrrSettings = logged["settings"]
    for kind, schema, expected in (("ubi_queries", QUERY, 3), ("ubi_events", EVENT, 3)):
        hits = os_client.search(
            index=settings.index_name(kind),
            body={"query": {"terms": {"query_id": logged["ids"]}}, "size": 10},
        )["hits"]["hits"]
        assert len(hits) == expected
        for hit in hits:
            problems = [e.message for e in Draft202012Validator(schema).iter_errors(hit["_source"])]
            assert problems == [], (kind, hit["_source"])


def test_events_another_tool_wrote_to_the_ubi_plugins_index_teach_the_memory(
    os_client: OpenSearch,
    music_settings: LtrrSettings,
    encoder: Encoder,
    plugin_indices: None,
    tmp_path: Path,
) -> None:
    """ubi.js sends its events to the plugin's `ubi_events`; `ltrr feedback --from-index`
    brings them in (twice: stored once), and the learner learns from them."""
    settings = music_settings.model_copy(update={"spool_dir": tmp_path / "spool"})
    tag = secrets.token_hex(3)
    text = f"ubi js fan of dolly {tag}"
    with LTRRClient(settings, opensearch=os_client, encoder=encoder) as ltrr:
        response = ltrr.search(text, limit=5)
    target = response.results[0].id
    os_client.index(
        index="ubi_events",
        body={
            "application": "web-shop",
            "action_name": "add_to_favorites",
            "query_id": response.search_id,
            "client_id": "browser 42",
            "timestamp": ubi_time(datetime.now(UTC)),
            "message_type": "CONVERSION",
            "event_attributes": {
                "object": {"object_id": target, "object_id_field": "id"},
                "position": {"ordinal": 1},
            },
        },
        refresh=True,
    )
    env = {
        "LTRR_OPENSEARCH_URL": settings.opensearch_url,
        "LTRR_INDEX_PREFIX": settings.index_prefix,
        "LTRR_SPOOL_DIR": str(tmp_path / "cli-spool"),
    }
    for _ in range(2):
        result = CliRunner().invoke(app, ["feedback", "--from-index", "ubi_events"], env=env)
        assert result.exit_code == 0, result.output
        assert "accepted 1, duplicates 0, rejected 0" in result.output
    os_client.indices.refresh(index=settings.index_name("ubi_events"))
    imported = {
        hit["_id"]: hit["_source"]
        for hit in os_client.search(
            index=settings.index_name("ubi_events"),
            body={"query": {"term": {"query_id": response.search_id}}},
        )["hits"]["hits"]
    }
    assert len(imported) == 1
    versions = stored_versions(os_client, settings.index_name("ubi_events"))
    assert [versions[key] for key in imported] == [1]  # written once
    Learner(os_client, settings, config=LearnerConfig(lag_s=0)).run_once(settle_all=True)
    assert [key for key in _memory(os_client, settings, target) if tag in key]
