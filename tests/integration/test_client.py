"""LTRRClient on a real node: search, feedback, memory, settlement, replay, concurrency."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from ltrr_os import LTRRClient, QueryError, SearchContext
from ltrr_os.catalog import SourceRow, build_music_catalog, ingest_rows, refresh_lexicon
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.feedback import replay
from ltrr_os.opensearch import bootstrap
from ltrr_os.policy import FixedPlanPolicy, new_default_policy

from .conftest import MUSIC, MUSIC_DIR

ALL_AT_20 = {"lexical": 20, "structured": 20, "vector": 20, "memory": 20, "exploration": 20}


@pytest.fixture
def client_settings(music_settings: LtrrSettings, tmp_path: Path) -> LtrrSettings:
    return music_settings.model_copy(
        update={
            "model_dir": tmp_path / "models",
            "spool_dir": tmp_path / "spool",
            "reward_window_s": 3600.0,
        }
    )


@pytest.fixture
def client(
    client_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> Iterator[LTRRClient]:
    with LTRRClient(client_settings, opensearch=os_client, encoder=encoder) as ltrr:
        yield ltrr


def ubi_count(os_client: OpenSearch, settings: LtrrSettings, kind: str, search_id: str) -> int:
    index = settings.index_name(kind)
    os_client.indices.refresh(index=index)
    return int(
        os_client.count(index=index, body={"query": {"term": {"query_id": search_id}}})["count"]
    )


def test_a_search_returns_results_with_provenance_decision_and_timings(
    client: LTRRClient,
) -> None:
    response = client.search("songs by queen", SearchContext(user_id="u-prov"), limit=7)
    assert 0 < len(response.results) <= 7
    assert [r.rank for r in response.results] == list(range(1, len(response.results) + 1))
    assert all(r.provenance for r in response.results)
    ran = response.decision.plan
    assert ran
    assert set(ran) <= set(ALL_AT_20)
    for result in response.results:
        assert {p.strategy for p in result.provenance} <= set(ran)
    assert all(0 < c.probability <= 1 for c in response.decision.choices)
    assert response.decision.probability == pytest.approx(
        math.prod(c.probability for c in response.decision.choices)
    )
    assert {"understand", "decide", "retrieve", "rank", "log", "total"} <= set(response.timings_ms)
    assert response.understanding.readings[0].slots
    assert not response.partial


def test_feedback_is_logged_once_teaches_memory_and_rejects_unknown_searches(
    client: LTRRClient, client_settings: LtrrSettings, os_client: OpenSearch
) -> None:
    client.policy = FixedPlanPolicy(ALL_AT_20)
    first = client.search("unheard of query about dolly parton", limit=10)
    target = first.results[-1]
    click = {
        "search_id": first.search_id,
        "action": "playback",
        "object_id": target.id,
        "position": target.rank,
        "user_id": "u-mem",
    }
    receipt = client.feedback(
        [
            {
                "search_id": first.search_id,
                "action": "impression",
                "object_id": first.results[0].id,
                "position": 1,
            },
            click,
            click,
            {"search_id": "no-such-search", "action": "click", "object_id": target.id},
            {"search_id": first.search_id, "action": "click"},
        ]
    )
    assert (receipt.accepted, receipt.duplicates, receipt.memory_updates) == (2, 1, 1)
    assert [r.index for r in receipt.rejected] == [3, 4]
    assert "unknown search id no-such-search" in receipt.rejected[0].reason
    assert "object_id" in receipt.rejected[1].reason
    assert client.feedback([click]).duplicates == 1
    assert client.flush() == 0
    assert ubi_count(os_client, client_settings, "ubi_events", first.search_id) == 2
    assert ubi_count(os_client, client_settings, "ubi_queries", first.search_id) == 1
    stored = os_client.get(index=client_settings.index_name("catalog"), id=target.id)["_source"]
    assert stored["q2e"]["unheard of query about dolly parton"] == pytest.approx(1.0)
    os_client.indices.refresh(index=client_settings.index_name("catalog"))
    again = client.search("unheard of query about dolly parton", limit=100)
    memory_first = [
        r.id
        for r in again.results
        if any(p.strategy == "memory" and p.rank == 1 for p in r.provenance)
    ]
    assert memory_first == [target.id]


def test_late_events_join_their_search_in_another_process(
    client_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    with LTRRClient(client_settings, opensearch=os_client, encoder=encoder) as first:
        response = first.search("queen greatest hits", limit=5)
        assert first.flush() == 0
    later = client_settings.model_copy(update={"spool_dir": client_settings.spool_dir / "later"})
    with LTRRClient(later, opensearch=os_client, encoder=encoder) as second:
        receipt = second.feedback(
            [
                {
                    "search_id": response.search_id,
                    "action": "click",
                    "object_id": response.results[0].id,
                    "position": 1,
                }
            ]
        )
    assert (receipt.accepted, receipt.rejected) == (1, [])


def test_settled_searches_teach_the_policy_and_a_new_version_is_saved(
    client: LTRRClient, client_settings: LtrrSettings
) -> None:
    client.policy = new_default_policy()
    for text in ("taylor swift", "80s rock", "chill acoustic"):
        response = client.search(text, limit=5)
        client.feedback(
            [
                {
                    "search_id": response.search_id,
                    "action": "click",
                    "object_id": response.results[0].id,
                    "position": 1,
                }
            ]
        )
    assert client.settle() == 0
    assert client.settle(force=True) == 3
    client.save()
    saved = sorted(p.name for p in client_settings.model_dir.glob("policy-*"))
    assert saved
    assert all("-v1." in name for name in saved)


def test_a_corrupt_policy_file_falls_back_with_a_warning(
    client_settings: LtrrSettings,
    os_client: OpenSearch,
    encoder: Encoder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with LTRRClient(client_settings, opensearch=os_client, encoder=encoder) as ltrr:
        ltrr.policy = new_default_policy()
        ltrr.search("queen", limit=3)
        ltrr.settle(force=True)
    for path in client_settings.model_dir.glob("policy-*"):
        path.write_bytes(b"\x00garbage")
    with (
        caplog.at_level(logging.WARNING),
        LTRRClient(client_settings, opensearch=os_client, encoder=encoder) as ltrr,
    ):
        assert ltrr.search("queen", limit=3).results
    assert any("policy" in record.message for record in caplog.records)


@pytest.mark.parametrize(
    ("query", "limit", "message"),
    [
        ("", 10, "empty"),
        ("  \t\n", 10, "empty"),
        ("x" * 600, 10, "limit 512"),
        ("queen", 0, "limit must be"),
        ("queen", 5000, "limit must be"),
    ],
)
def test_requests_outside_the_limits_are_refused_before_opensearch(
    client: LTRRClient, query: str, limit: int, message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        client.search(query, limit=limit)


def test_concurrent_searches_and_feedback(client: LTRRClient) -> None:
    """The bandit's workspace is shared by every thread: decisions and learning must not race."""
    errors: list[BaseException] = []
    ids: list[str] = []

    def work(worker: int) -> None:
        try:
            for i in range(6):
                response = client.search(
                    ["queen", "love", "80s rock"][i % 3],
                    SearchContext(user_id=f"t{worker}"),
                    limit=5,
                )
                ids.append(response.search_id)
                events = [
                    {
                        "search_id": response.search_id,
                        "action": "click",
                        "object_id": result.id,
                        "position": result.rank,
                    }
                    for result in response.results[:1]
                ]
                assert client.feedback(events).accepted == len(events)
                client.settle(response.search_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 36
    assert client.settle(force=True) == 0


@pytest.fixture
def replay_settings(
    client_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> Iterator[LtrrSettings]:
    """A catalog of its own: replay resets the memory of every entity."""
    own = client_settings.model_copy(
        update={"index_prefix": f"{client_settings.index_prefix}replay-"}
    )
    bootstrap(os_client, own, MUSIC)
    queen = [e for e in build_music_catalog(MUSIC_DIR).entities if e.get("artist") == "Queen"]
    ingest_rows(os_client, own, MUSIC, [SourceRow("q", i, e) for i, e in enumerate(queen)], encoder)
    refresh_lexicon(os_client, own, MUSIC)
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*")


def test_replay_rebuilds_memory_and_policy_from_the_log_alone(
    replay_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    with LTRRClient(replay_settings, opensearch=os_client, encoder=encoder) as ltrr:
        response = ltrr.search("replayed query for queen", limit=5)
        target = response.results[0].id
        ltrr.feedback(
            [
                {
                    "search_id": response.search_id,
                    "action": "playback",
                    "object_id": target,
                    "position": 1,
                    "user_id": "fan",
                }
            ]
        )
        assert ltrr.flush() == 0
    catalog = replay_settings.index_name("catalog")
    os_client.update(
        index=catalog, id=target, body={"doc": {"q2e": {"garbage": 9.0}}}, refresh=True
    )
    policy = new_default_policy()
    report, profiles = replay(os_client, replay_settings, MUSIC, policy)
    assert (report.searches, report.learned, report.engagements) == (1, 1, 1)
    memory = os_client.get(index=catalog, id=target)["_source"]["q2e"]
    assert memory == {"replayed query for queen": pytest.approx(1.0)}
    assert profiles.get("fan").engagements == 1
