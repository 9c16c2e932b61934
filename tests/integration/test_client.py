"""LTRRClient on a real node: search, feedback, memory, settlement, replay, concurrency."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from ltrr_os import LTRRClient, QueryError, SearchContext
from ltrr_os.catalog import SourceRow, build_music_catalog, ingest_rows, refresh_lexicon
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.feedback import ProfileStore
from ltrr_os.learning import Learner, LearnerConfig
from ltrr_os.memory import decay_scale
from ltrr_os.models import ModelStore
from ltrr_os.opensearch import bootstrap
from ltrr_os.policy import FixedPlanPolicy, RulePolicy, VWBandit, policy_from_bytes
from ltrr_os.strategies import strategies

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
    assert set(ran) <= set(strategies())
    for result in response.results:
        assert {p.strategy for p in result.provenance} <= set(ran)
    assert [c.strategy for c in response.decision.choices] == list(ran)
    assert all(0 < c.probability <= 1 for c in response.decision.every_choice)
    assert response.decision.probability == pytest.approx(
        math.prod(c.probability for c in response.decision.every_choice)
    )
    assert {"understand", "decide", "retrieve", "rank", "log", "total"} <= set(response.timings_ms)
    assert response.understanding.readings[0].slots
    assert not response.partial
    distribution = response.decision.distribution
    assert sum(option.probability for option in distribution) == pytest.approx(1, abs=1e-5)
    assert response.decision.action_history


def learning_client(
    settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder, **options: Any
) -> LTRRClient:
    """A client with its learner embedded, which learns when told (`settle`): the learner
    thread makes its first step, then waits an hour. It first catches up with what earlier
    tests logged, so a test's own figures start from zero."""
    client = LTRRClient(
        settings,
        opensearch=os_client,
        encoder=encoder,
        learn="embedded",
        learner_config=LearnerConfig(poll_s=3600),
        **options,
    )
    client.settle(force=True)
    return client


def _memory(os_client: OpenSearch, settings: LtrrSettings, entity: str) -> dict[str, float]:
    """An entity's observed memory, decayed to now (stored scores are forward-decayed)."""
    stored = os_client.get(index=settings.index_name("catalog"), id=entity)["_source"]
    scale = decay_scale(datetime.now(UTC))
    return {key: value / scale for key, value in (stored.get("q2e") or {}).items()}


def test_feedback_is_logged_once_and_the_learner_teaches_the_memory(
    client_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    with learning_client(
        client_settings, os_client, encoder, policy=FixedPlanPolicy(ALL_AT_20)
    ) as client:
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
                {**click, "timestamp": "9999-12-31T00:00:00Z"},
            ]
        )
        assert (receipt.accepted, receipt.duplicates) == (3, 1)
        assert [r.index for r in receipt.rejected] == [4, 5]
        assert "object_id" in receipt.rejected[0].reason
        assert "future" in receipt.rejected[1].reason
        assert client.feedback([click]).duplicates == 1
        report = client.settle()
        assert report.events == 1  # the unknown search's event is stored, and joins nothing
        assert ubi_count(os_client, client_settings, "ubi_events", first.search_id) == 2
        assert ubi_count(os_client, client_settings, "ubi_queries", first.search_id) == 1
        memory = _memory(os_client, client_settings, target.id)
        assert memory["unheard of query about dolly parton"] == pytest.approx(1.0, rel=1e-2)
        again = client.search("unheard of query about dolly parton", limit=100)
        memory_first = [
            r.id
            for r in again.results
            if any(p.strategy == "memory" and p.rank == 1 for p in r.provenance)
        ]
        assert memory_first == [target.id]


def test_feedback_reaching_another_process_first_is_taken_and_joined(
    client_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    """No lookup, no refusal: the search may still be in the other process's spool."""
    later = client_settings.model_copy(update={"spool_dir": client_settings.spool_dir / "later"})
    with (
        LTRRClient(client_settings, opensearch=os_client, encoder=encoder) as first,
        learning_client(later, os_client, encoder) as second,
    ):
        response = first.search("queen greatest hits", limit=5)
        receipt = second.feedback(
            [
                {
                    "search_id": response.search_id,
                    "action": "playback",
                    "object_id": response.results[0].id,
                    "position": 1,
                }
            ]
        )
        assert (receipt.accepted, receipt.rejected) == (1, [])
        assert second.flush() == 0
        assert first.flush() == 0
        assert second.settle().events == 1


def test_settled_searches_teach_the_policy_and_a_new_version_is_published(
    client_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    store = ModelStore(os_client, client_settings)
    with learning_client(client_settings, os_client, encoder) as client:
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
        assert client.settle().policy_lessons == 0  # the reward window (1 h) has not passed
        report = client.settle(force=True)
        assert report.policy_lessons == 3
        pointer = store.pointer("policy", "bandit")
        assert pointer is not None
        assert isinstance(client.policy, VWBandit)
        assert pointer.version == client.policy.version  # served at once
        live = store.get("policy", "bandit", pointer.version)
        assert (live.status, live.trained_by.split(":")[1]) == ("promoted", str(os.getpid()))


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


def test_concurrent_searches_and_feedback(
    client_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    errors: list[BaseException] = []
    ids: list[str] = []
    shown: list[str] = []  # searches with results, and an event saying they were seen
    with learning_client(client_settings, os_client, encoder) as client:

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
                    # A strategy that failed or timed out (a loaded machine: an expansion past
                    # its deadline) leaves the plan's reward unknown: that search teaches nothing.
                    if not response.partial:
                        shown.extend(response.search_id for _ in events)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(ids)) == 36
        report = client.settle(force=True)
    assert (report.settled, report.policy_lessons) == (36, len(shown))


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


def test_replay_rebuilds_memory_profiles_and_policy_from_the_log_alone(
    replay_settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    with learning_client(replay_settings, os_client, encoder) as ltrr:
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
        assert ltrr.settle(force=True).policy_lessons == 1
        live = ltrr.policy
        assert isinstance(live, VWBandit)
    catalog = replay_settings.index_name("catalog")
    os_client.update(
        index=catalog, id=target, body={"doc": {"q2e": {"garbage": 9.0}}}, refresh=True
    )
    learner = Learner(os_client, replay_settings, config=LearnerConfig(lag_s=0))
    report = learner.rebuild(MUSIC, settle_all=True)
    assert (report.settled, report.policy_lessons, report.events) == (1, 1, 1)
    assert _memory(os_client, replay_settings, target) == {
        "replayed query for queen": pytest.approx(1.0, rel=1e-2)
    }
    assert ProfileStore(os_client, replay_settings).get("fan").engagements == 1
    store = ModelStore(os_client, replay_settings)
    [candidate] = [v for v in store.versions("policy") if v.reason.startswith("rebuilt")]
    assert candidate.status == "candidate"  # one held-out decision: too few to promote on
    assert "too few to compare" in candidate.reason
    rebuilt = policy_from_bytes(store.load("policy", "bandit", candidate.version)[1])
    assert (rebuilt.updates, rebuilt.history) == (live.updates, live.history)
    assert rebuilt.to_bytes().partition(b"\n")[2] == live.to_bytes().partition(b"\n")[2]


def _by(artist: str, word: str = "") -> Any:
    return lambda r: r.source.get("artist") == artist and word in str(r.title).lower()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tayler love", _by("Taylor Swift", "love")),
        ("bohemian rhapsody", _by("Queen", "bohemian rhapsody")),
        ("jolene", _by("Dolly Parton", "jolene")),
    ],
)
def test_the_demo_queries_show_what_a_person_expects_at_the_top(
    query: str,
    expected: Any,
    client_settings: LtrrSettings,
    os_client: OpenSearch,
    encoder: Encoder,
) -> None:
    """Cold start (the rule policy, the fused ranking): a Taylor Swift song with "love" in its
    title within the first three for a misspelt "tayler love", and so on."""
    with LTRRClient(
        client_settings, opensearch=os_client, encoder=encoder, policy=RulePolicy()
    ) as client:
        response = client.search(query, limit=3)
    assert any(expected(result) for result in response.results), [r.title for r in response.results]
