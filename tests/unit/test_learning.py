"""The learning rules, the memory's forward decay and the profile ledger, without a node."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ltrr_os import LtrrError
from ltrr_os.feedback import CandidateList, Profile, SearchRecord
from ltrr_os.learning import LearningRules, LoggedEvent, LoggedSearch
from ltrr_os.memory import HALF_LIFE_DAYS, MemoryBatch, MemoryUpdate, decay_scale
from ltrr_os.policy import RulePolicy

from .test_policy import _context

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
RULES = LearningRules(reward_window_s=60)


def _record(search_id: str = "s1") -> SearchRecord:
    context = _context("known_item")
    decision = RulePolicy().decide(context)
    return SearchRecord(
        search_id=search_id,
        text="queen bohemian",
        timestamp=T0,
        user_id="u1",
        context=context,
        decision=decision,
        candidates={
            name: CandidateList(ids=[f"{name}-{i}" for i in range(1, 6)]) for name in decision.plan
        },
        results=["lexical-1", "memory-1"],
    )


def _event(
    action: str,
    item: str | None = "lexical-2",
    after_s: float = 1.0,
    timestamp: datetime | None = None,
    user: str | None = None,
) -> LoggedEvent:
    arrived = T0 + timedelta(seconds=after_s)
    return LoggedEvent(
        key=f"{action}-{item}-{after_s}",
        search_id="s1",
        action=action,
        object_id=item,
        timestamp=timestamp or arrived,
        ingested_at=arrived,
        user_id=user,
    )


def test_a_search_never_shown_teaches_the_policy_nothing() -> None:
    assert RULES.outcome(_record(), T0, []) is None
    late = _event("click", after_s=61)  # arrived after the window: not part of the lesson
    assert RULES.outcome(_record(), T0, [late]) is None


def test_shown_and_not_engaged_is_a_miss_and_an_engagement_a_hit() -> None:
    miss = RULES.outcome(_record(), T0, [_event("impression", "lexical-1")])
    assert miss is not None
    assert not miss.engaged
    assert all(r.hit_rank is None for r in miss.strategies.values())
    hit = RULES.outcome(_record(), T0, [_event("impression", "lexical-1"), _event("playback")])
    assert hit is not None
    assert hit.engaged
    assert hit.strategies["lexical"].hit_rank == 2
    assert hit.strategies["lexical"].engagement_weight == 1.0


def test_the_window_is_measured_in_arrival_time_whatever_the_event_says() -> None:
    backdated = _event("playback", after_s=59, timestamp=T0 - timedelta(days=3))
    outcome = RULES.outcome(_record(), T0, [backdated])
    assert outcome is not None
    assert outcome.engaged
    assert RULES.settled(T0, T0 + timedelta(seconds=60))
    assert not RULES.settled(T0, T0 + timedelta(seconds=59))


def _search() -> LoggedSearch:
    return LoggedSearch.of(_record(), T0)


def test_an_event_far_in_the_future_is_clamped_to_its_arrival() -> None:
    future = _event("playback", timestamp=datetime(9999, 12, 31, tzinfo=UTC))
    lesson = RULES.memory_lesson(_search(), future)
    assert lesson is not None
    assert lesson.timestamp == future.ingested_at + timedelta(seconds=RULES.max_future_s)
    assert decay_scale(lesson.timestamp) < math.inf


def test_engagement_with_an_item_never_shown_nor_retrieved_does_not_write_the_memory() -> None:
    stranger = RULES.memory_lesson(_search(), _event("playback", item="track:never-retrieved"))
    assert stranger is not None
    assert stranger.unshown
    assert stranger.weight == 0.0
    retrieved = RULES.memory_lesson(_search(), _event("playback", item="structured-5"))
    shown = RULES.memory_lesson(_search(), _event("click", item="lexical-1"))
    assert retrieved is not None
    assert shown is not None
    assert (retrieved.unshown, retrieved.weight) == (False, 1.0)
    assert (shown.unshown, shown.weight) == (False, 0.5)
    assert RULES.memory_lesson(_search(), _event("impression")) is None


def test_one_search_adds_one_weight_per_entity_the_strongest() -> None:
    lessons = [
        lesson
        for action in ("click", "playback", "playback", "add_to_favorites")
        if (lesson := RULES.memory_lesson(_search(), _event(action))) is not None
    ]
    kept = RULES.capped(lessons)
    assert [(k.entity_id, k.weight) for k in kept] == [("lexical-2", 1.0)]


def test_one_user_adds_at_most_the_daily_cap_to_one_entity_for_one_query() -> None:
    profile = Profile(user_id="u1")
    day = "2026-06-01"
    added = [profile.allow(day, "bohemian rhapsody", "e1", 1.0, 1.0) for _ in range(20)]
    assert added == [1.0] + [0.0] * 19
    assert profile.allow(day, "bohemian rhapsody", "e2", 0.5, 1.0) == 0.5
    assert profile.allow(day, "another query", "e1", 1.0, 1.0) == 1.0
    assert profile.allow("2026-06-02", "bohemian rhapsody", "e1", 1.0, 1.0) == 1.0
    assert all(line.startswith("2026-06-02|") for line in profile.ledger)


def test_a_fresher_engagement_outranks_an_older_higher_score_as_the_decay_says() -> None:
    """Forward decay: the stored score of an old, strong engagement and of a recent, weaker
    one compare as their decayed values do, at any time they are read."""
    batch = MemoryBatch()
    old = T0 - timedelta(days=90)  # three half-lives ago: 2.0 decays to 0.25
    batch.add(MemoryUpdate(entity_id="old", query="love", weight=1.0, timestamp=old))
    batch.add(MemoryUpdate(entity_id="old", query="love", weight=1.0, timestamp=old))
    batch.add(MemoryUpdate(entity_id="new", query="love", weight=0.5, timestamp=T0))
    stored = {entity: keys["love"] for entity, keys in batch.deltas.items()}
    assert stored["new"] > stored["old"]
    for later in (T0, T0 + timedelta(days=400)):
        decayed = {e: v / decay_scale(later) for e, v in stored.items()}
        factor = 0.5 ** ((later - T0).days / HALF_LIFE_DAYS)
        assert decayed["new"] == pytest.approx(0.5 * factor)
        assert decayed["old"] == pytest.approx(0.25 * factor)


@given(
    st.lists(st.tuples(st.floats(0.01, 1.0), st.integers(-2000, 2000)), min_size=1, max_size=20),
    st.lists(st.tuples(st.floats(0.01, 1.0), st.integers(-2000, 2000)), min_size=1, max_size=20),
)
def test_stored_scores_order_entities_as_their_decayed_values(
    a: list[tuple[float, int]], b: list[tuple[float, int]]
) -> None:
    batch = MemoryBatch()
    for entity, engagements in (("a", a), ("b", b)):
        for weight, days in engagements:
            moment = T0 + timedelta(days=days)
            batch.add(MemoryUpdate(entity_id=entity, query="q", weight=weight, timestamp=moment))
    decayed = {
        entity: sum(w * 0.5 ** ((2001 - d) / HALF_LIFE_DAYS) for w, d in engagements)
        for entity, engagements in (("a", a), ("b", b))
    }
    stored = {entity: keys["q"] for entity, keys in batch.deltas.items()}
    if not math.isclose(decayed["a"], decayed["b"], rel_tol=1e-9):
        assert (stored["a"] > stored["b"]) == (decayed["a"] > decayed["b"])


def test_a_date_past_the_decay_range_is_a_clear_error() -> None:
    with pytest.raises(LtrrError, match="half-lives"):
        decay_scale(datetime(2100, 1, 1, tzinfo=UTC))
