"""The learner on a real node, driven as an operator would: `ltrr feedback` and `ltrr learn` from
the shell, events that arrive before their search, a caller that never sends feedback, and an
old strong engagement against a fresh weak one."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from ltrr_os import LTRRClient, SearchContext
from ltrr_os.cli import app
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.feedback import FeedbackEvent, ProfileStore, ubi_event
from ltrr_os.memory import decay_scale
from ltrr_os.models import ModelStore
from ltrr_os.policy import FixedPlanPolicy

from .conftest import MUSIC, load_music

ARTISTS = {"Queen", "Dolly Parton"}


@pytest.fixture
def own(
    settings: LtrrSettings, os_client: OpenSearch, encoder: Encoder, tmp_path: Path
) -> Iterator[LtrrSettings]:
    """A small catalog and empty logs of the test's own."""
    own = settings.model_copy(
        update={
            "index_prefix": f"{settings.index_prefix}learn-{secrets.token_hex(2)}-",
            "spool_dir": tmp_path / "spool",
            "model_dir": tmp_path / "models",
            "reward_window_s": 3600.0,
        }
    )
    load_music(os_client, own, encoder, ARTISTS)
    yield own
    os_client.indices.delete(index=f"{own.index_prefix}*", expand_wildcards="all")


def ltrr(settings: LtrrSettings, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """Run the CLI against these settings; (exit code, what it printed)."""
    result = CliRunner().invoke(
        app,
        ["--index-prefix", settings.index_prefix, *args],
        input=stdin,
        env={
            "LTRR_OPENSEARCH_URL": settings.opensearch_url,
            "LTRR_SPOOL_DIR": str(settings.spool_dir),
            "LTRR_REWARD_WINDOW_S": str(settings.reward_window_s),
        },
    )
    return result.exit_code, result.output


def memory(os_client: OpenSearch, settings: LtrrSettings, entity: str) -> dict[str, float]:
    stored = os_client.get(index=settings.index_name("catalog"), id=entity)["_source"]
    scale = decay_scale(datetime.now(UTC))
    return {key: value / scale for key, value in (stored.get("q2e") or {}).items()}


def test_one_event_sent_by_three_feedback_runs_is_learned_once(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder, tmp_path: Path
) -> None:
    with LTRRClient(own, opensearch=os_client, encoder=encoder) as client:
        response = client.search("jolene", SearchContext(user_id="fan"), limit=5)
    target = response.results[0]
    event = (
        f'{{"search_id": "{response.search_id}", "action": "playback", '
        f'"object_id": "{target.id}", "position": 1, "event_id": "the-one-play"}}\n'
    )
    for _ in range(3):
        code, output = ltrr(own, "feedback", "-", stdin=event)
        assert code == 0, output
        assert "accepted 1, duplicates 0, rejected 0" in output
    code, output = ltrr(own, "learn", "--once", "--lag", "0")
    assert code == 0, output
    assert "1 engagements applied to the memory" in output
    assert memory(os_client, own, target.id) == {"jolene": pytest.approx(1.0, rel=1e-2)}
    code, output = ltrr(own, "learn", "--once", "--lag", "0")
    assert "0 engagements applied" in output
    assert memory(os_client, own, target.id) == {"jolene": pytest.approx(1.0, rel=1e-2)}


def test_an_event_that_arrives_before_its_search_is_joined_when_the_search_does(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    """Another server's spool may deliver the event first: nothing is refused or lost. (The
    search's document is a copy of a real one under a new id, written after the event.)"""
    with LTRRClient(own, opensearch=os_client, encoder=encoder) as client:
        response = client.search("bohemian rhapsody", limit=5)
        assert client.flush() == 0
    queries = own.index_name("ubi_queries")
    search = os_client.get(index=queries, id=response.search_id)["_source"]
    late_id = "search-delivered-late"
    search.pop("ingested_at")
    search["query_id"] = search["ltrr"]["search_id"] = late_id
    target = response.results[1]
    event = FeedbackEvent(
        search_id=late_id, action="playback", object_id=target.id, position=2, event_id="early"
    )
    events = own.index_name("ubi_events")
    os_client.index(index=events, id=event.key, body=ubi_event(event), refresh=True)
    code, output = ltrr(own, "learn", "--once", "--lag", "0")
    assert "0 engagements applied" in output
    os_client.index(index=queries, id=late_id, body=search, refresh=True)
    code, output = ltrr(own, "learn", "--once", "--lag", "0")
    assert code == 0, output
    assert "1 engagements applied" in output
    assert memory(os_client, own, target.id) == {"bohemian rhapsody": pytest.approx(1.0, rel=1e-2)}


def test_a_caller_that_never_sends_feedback_does_not_move_the_policy(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    store = ModelStore(os_client, own)
    with LTRRClient(own, opensearch=os_client, encoder=encoder) as client:
        for text in ["queen", "jolene", "80s rock", "love"] * 5:
            client.search(text, limit=5)
    code, output = ltrr(own, "learn", "--once", "--settle-all", "--lag", "0")
    assert code == 0, output
    assert "20 searches settled, 0 taught the policy, 20 never shown" in output
    assert store.pointer("policy", "bandit") is None  # nothing learned, nothing published


def test_a_fresh_engagement_outranks_an_older_stronger_one_as_the_decay_says(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    """A playback 60 days ago (two half-lives: 1 x 1/4 = 0.25 today) against a click today
    (0.5): the fresh one leads the memory strategy, though its past score was higher."""
    plan = FixedPlanPolicy({"lexical": 30, "vector": 30})
    with LTRRClient(own, opensearch=os_client, encoder=encoder, policy=plan) as client:
        response = client.search("songs for the road", SearchContext(user_id="a"), limit=10)
        old, fresh = response.results[0].id, response.results[1].id
        long_ago = datetime.now(UTC) - timedelta(days=60)
        client.feedback(
            [
                {
                    "search_id": response.search_id,
                    "action": "playback",
                    "object_id": old,
                    "timestamp": long_ago.isoformat(),
                },
                {"search_id": response.search_id, "action": "click", "object_id": fresh},
            ]
        )
        assert client.flush() == 0
    code, output = ltrr(own, "learn", "--once", "--lag", "0")
    assert code == 0, output
    assert memory(os_client, own, old)["songs for the road"] == pytest.approx(0.25, rel=1e-2)
    assert memory(os_client, own, fresh)["songs for the road"] == pytest.approx(0.5, rel=1e-2)
    os_client.indices.refresh(index=own.index_name("catalog"))
    memory_only = FixedPlanPolicy({"memory": 10})
    with LTRRClient(own, opensearch=os_client, encoder=encoder, policy=memory_only) as client:
        ranked = [r.id for r in client.search("songs for the road", limit=10).results]
    assert ranked[:2] == [fresh, old]


def test_one_user_cannot_push_an_item_never_shown_up_the_memory(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    with LTRRClient(own, opensearch=os_client, encoder=encoder) as client:
        response = client.search("bohemian rhapsody", SearchContext(user_id="pusher"), limit=5)
        shown = response.results[0].id
        never = "track:dolly-parton--jolene"
        assert never not in {r.id for r in response.results}
        client.feedback(
            [
                {
                    "search_id": response.search_id,
                    "action": "playback",
                    "object_id": item,
                    "event_id": f"push-{item}-{n}",
                }
                for n in range(20)
                for item in (never, shown)
            ]
        )
        assert client.flush() == 0
    code, output = ltrr(own, "learn", "--once", "--lag", "0")
    assert code == 0, output
    assert "40 engagements applied" in output
    assert "20 with items never shown" in output
    assert memory(os_client, own, never) == {}
    assert memory(os_client, own, shown) == {"bohemian rhapsody": pytest.approx(1.0, rel=1e-2)}


def test_replay_puts_the_rebuilt_policy_through_the_gate(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    """Enough logged decisions (300, each shown, half engaged) for the gate to compare the
    rebuilt policy with the live one on the newest 20%: it is promoted exactly when its
    estimate is not below the live policy's interval, and the reason says so."""
    texts = ["queen", "jolene", "bohemian rhapsody", "dolly parton", "love", "killer queen"]
    with LTRRClient(own, opensearch=os_client, encoder=encoder) as client:
        for n in range(300):
            response = client.search(texts[n % len(texts)], SearchContext(user_id=f"u{n % 7}"))
            if not response.results:
                continue
            seen = {"search_id": response.search_id, "object_id": response.results[0].id}
            actions = ["impression", "click"] if n % 2 else ["impression"]
            client.feedback([{**seen, "action": a, "position": 1} for a in actions])
        assert client.flush() == 0
    time.sleep(1.5)  # the learner reads the log a second behind the cluster's clock
    code, output = ltrr(own, "replay", "--settle-all")
    assert code == 0, output
    store = ModelStore(os_client, own)
    [rebuilt] = [v for v in store.versions("policy") if v.reason.startswith("rebuilt")]
    assert rebuilt.metrics["gate"]["held_out_decisions"] >= 50
    assert ("is not below" in rebuilt.reason) == (rebuilt.status == "promoted")
    assert rebuilt.status in output
    pointer = store.pointer("policy", "bandit")
    assert (pointer is not None and pointer.version == rebuilt.version) == (
        rebuilt.status == "promoted"
    )


def test_engagement_gives_the_user_a_taste_that_personal_searches_with(
    own: LtrrSettings, os_client: OpenSearch, encoder: Encoder
) -> None:
    """The learner keeps the taste in the user's profile; a serving process reads it, and the
    personal strategy becomes applicable for that user only."""
    plan = FixedPlanPolicy({"lexical": 5, "personal": 10})
    with LTRRClient(own, opensearch=os_client, encoder=encoder, policy=plan) as client:
        before = client.search("jolene", SearchContext(user_id="fan"), limit=5)
        assert before.decision.plan == {"lexical": 5}  # no history: no personal candidates
        client.feedback(
            [
                FeedbackEvent(
                    search_id=before.search_id,
                    action="playback",
                    object_id=result.id,
                    position=result.rank,
                    user_id="fan",
                )
                for result in before.results[:2]
            ]
        )
        assert client.flush() == 0
    code, output = ltrr(own, "learn", "--once", "--lag", "0")
    assert code == 0, output
    profile = ProfileStore(os_client, own).read(["fan"])["fan"]
    assert profile.taste is not None
    assert len(profile.taste.mean) == MUSIC.embedding.dimension
    with LTRRClient(own, opensearch=os_client, encoder=encoder, policy=plan) as client:
        after = client.search("country", SearchContext(user_id="fan"), limit=10)
        stranger = client.search("country", SearchContext(user_id="stranger"), limit=10)
    assert after.decision.plan == {"lexical": 5, "personal": 10}
    assert stranger.decision.plan == {"lexical": 5}
    found = [r for r in after.results if any(p.strategy == "personal" for p in r.provenance)]
    assert sum(r.source.get("artist") == "Dolly Parton" for r in found) >= len(found) // 2
