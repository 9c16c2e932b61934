"""The learning rules: what a logged search and its events teach the policy, the Q2E memory and
the user profiles. One place, used alike by the learner, `ltrr replay` (the learner from the
start of the log) and the simulator.

Time comes from the log, never from one process's clock: every UBI document carries
`ingested_at`, the cluster's time of arrival. A search *settles* once the log has passed its
arrival plus the reward window, whichever server handled it; the events that count for the
policy are those that arrived within that window. So the learner, a replay and a learner
restarted halfway all teach the policy the same lessons in the same order.

- A search whose results were never shown (no event at all within its window: no impression,
  no engagement) teaches the policy nothing; shown and not engaged is a miss.
- A strategy that failed teaches nothing (the policies check `failed`).
- An engagement counts for the memory at its own time, clamped to at most `max_future_s`
  after it reached the cluster (a clock far ahead cannot freeze an entity's decay).
- Engagement with an item the search neither showed nor retrieved is not evidence for that
  query: it is stored and counted, and writes the memory with `unshown_weight` (0 by default).
- One user (or, without a user id, one session) adds at most `daily_cap` to one entity's memory
  for one query per day, however many events it sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from .._text import memory_key
from ..feedback import CandidateList, Profile, SearchRecord
from ..memory import MemoryUpdate
from ..policy import ENGAGEMENT_WEIGHTS, Decision, Outcome, StrategyOutcome


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A UBI event as the learner reads it."""

    key: str
    search_id: str
    action: str
    object_id: str | None
    timestamp: datetime
    ingested_at: datetime
    user_id: str | None = None
    session_id: str | None = None

    @property
    def weight(self) -> float:
        """How much the action says the user wanted the object (0 for impressions)."""
        return ENGAGEMENT_WEIGHTS.get(self.action, 0.0)


@dataclass(frozen=True, slots=True)
class LoggedSearch:
    """What the memory and profile rules need of a logged search."""

    search_id: str
    text: str
    ingested_at: datetime
    user_id: str | None
    session_id: str | None
    shown: frozenset[str]
    retrieved: frozenset[str]
    attributes: Mapping[str, Mapping[str, Sequence[str]]]

    @classmethod
    def of(cls, record: SearchRecord, ingested_at: datetime) -> LoggedSearch:
        return cls(
            search_id=record.search_id,
            text=record.text,
            ingested_at=ingested_at,
            user_id=record.user_id,
            session_id=record.session_id,
            shown=frozenset(record.results),
            retrieved=frozenset(i for c in record.candidates.values() for i in c.ids),
            attributes=record.attributes,
        )


@dataclass
class EngagementLessons:
    """What a run of engagements taught: memory updates (after the caps), and how many
    engagements were with items never shown or were cut by a cap."""

    memory: list[MemoryUpdate] = field(default_factory=list)
    unshown: int = 0
    capped: int = 0


@dataclass(frozen=True, slots=True)
class MemoryLesson:
    """One engagement's contribution to the memory, before the per-user cap."""

    entity_id: str
    text: str
    weight: float
    timestamp: datetime
    contributor: str | None
    unshown: bool


def outcome_of(
    decision: Decision,
    candidates: Mapping[str, CandidateList],
    engagements: Mapping[str, float],
) -> Outcome:
    """Per chosen strategy: the best-ranked engaged item in what it retrieved, and its weight.

    A strategy that failed is marked so (the policy must not learn that it found nothing)."""
    outcomes: dict[str, StrategyOutcome] = {}
    for choice in decision.choices:
        listed = candidates.get(choice.strategy)
        ids = listed.ids if listed is not None else []
        hit_rank, weight = None, 0.0
        for rank, item in enumerate(ids, start=1):
            if engagements.get(item, 0.0) > 0:
                hit_rank = rank if hit_rank is None else hit_rank
                weight = max(weight, engagements[item])
        outcomes[choice.strategy] = StrategyOutcome(
            strategy=choice.strategy,
            size=choice.size,
            hit_rank=hit_rank,
            engagement_weight=weight,
            candidates=len(ids),
            failed=listed is None or listed.failed,
        )
    return Outcome(strategies=outcomes, engaged=any(w > 0 for w in engagements.values()))


class LearningRules(BaseModel):
    """The parameters of the rules (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward_window_s: float = Field(default=1800.0, ge=0)
    max_future_s: float = Field(default=300.0, ge=0)
    unshown_weight: float = Field(default=0.0, ge=0, le=1)
    daily_cap: float = Field(default=1.0, gt=0)

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.reward_window_s)

    def counts_for_policy(self, search_arrived: datetime, event: LoggedEvent) -> bool:
        """Whether the event reached the log within the search's reward window."""
        return event.ingested_at <= search_arrived + self.window

    def settled(self, search_arrived: datetime, log_time: datetime) -> bool:
        return search_arrived + self.window <= log_time

    def event_time(self, event: LoggedEvent) -> datetime:
        """The event's own time, but never more than `max_future_s` after it arrived."""
        return min(event.timestamp, event.ingested_at + timedelta(seconds=self.max_future_s))

    def outcome(
        self, record: SearchRecord, arrived: datetime, events: Iterable[LoggedEvent]
    ) -> Outcome | None:
        """What a settled search teaches the policy; None when it teaches nothing: its results
        were never shown (no event within the window) or nothing was retrieved."""
        in_window = [e for e in events if self.counts_for_policy(arrived, e)]
        if not in_window or not record.decision.plan:
            return None
        engagements: dict[str, float] = {}
        for event in in_window:
            if event.object_id and event.weight > 0:
                engagements[event.object_id] = max(
                    event.weight, engagements.get(event.object_id, 0.0)
                )
        return outcome_of(record.decision, record.candidates, engagements)

    def memory_lesson(self, search: LoggedSearch, event: LoggedEvent) -> MemoryLesson | None:
        """What an engagement adds to the memory (before the cap); None for other events."""
        if event.weight <= 0 or not event.object_id:
            return None
        unshown = event.object_id not in search.shown and event.object_id not in search.retrieved
        user = event.user_id or search.user_id
        session = event.session_id or search.session_id
        return MemoryLesson(
            entity_id=event.object_id,
            text=search.text,
            weight=event.weight * (self.unshown_weight if unshown else 1.0),
            timestamp=self.event_time(event),
            contributor=user if user else (f"session:{session}" if session else None),
            unshown=unshown,
        )

    def engagements(
        self,
        joined: Sequence[tuple[LoggedSearch, LoggedEvent]],
        profiles: Mapping[str, Profile],
        namespace: str = "",
        vectors: Mapping[str, Sequence[float]] | None = None,
    ) -> EngagementLessons:
        """What engagements (each joined to its search, in the order they joined) teach the
        memory and the user profiles. `profiles` must hold every user of `profile_users`: their
        counts, tastes (from the engaged entities' `vectors`) and ledgers are updated in
        place."""
        by_search: dict[str, list[MemoryLesson]] = {}
        for search, event in joined:
            lesson = self.memory_lesson(search, event)
            if lesson is None:
                continue
            by_search.setdefault(search.search_id, []).append(lesson)
            user = event.user_id or search.user_id
            if user and event.object_id:
                profiles[user].engage(
                    search.attributes.get(event.object_id, {}),
                    (vectors or {}).get(event.object_id),
                    event.weight,
                    self.event_time(event),
                )
        raw = [lesson for found in by_search.values() for lesson in found]
        kept = [lesson for found in by_search.values() for lesson in self.capped(found)]
        result = EngagementLessons(unshown=sum(lesson.unshown for lesson in raw))
        result.capped = len(raw) - len(kept)  # beyond one per entity and search
        for lesson in kept:
            weight = lesson.weight
            if lesson.contributor is not None:
                allowed = profiles[lesson.contributor].allow(
                    lesson.timestamp.date().isoformat(),
                    memory_key(lesson.text),
                    lesson.entity_id,
                    weight,
                    self.daily_cap,
                )
                result.capped += allowed < weight
                weight = allowed
            if weight > 0:
                result.memory.append(
                    MemoryUpdate(
                        entity_id=lesson.entity_id,
                        query=lesson.text,
                        weight=min(weight, 1.0),
                        timestamp=lesson.timestamp,
                        namespace=namespace,
                    )
                )
        return result

    @staticmethod
    def engaged_entities(joined: Sequence[tuple[LoggedSearch, LoggedEvent]]) -> set[str]:
        """The entities whose vectors `engagements` moves the users' tastes towards."""
        return {e.object_id for _, e in joined if e.weight > 0 and e.object_id}

    @staticmethod
    def profile_users(joined: Sequence[tuple[LoggedSearch, LoggedEvent]]) -> set[str]:
        """The users (and sessions) whose profiles `engagements` reads and updates."""
        users: set[str] = set()
        for search, event in joined:
            if event.weight <= 0 or not event.object_id:
                continue
            if user := event.user_id or search.user_id:
                users.add(user)
            elif session := event.session_id or search.session_id:
                users.add(f"session:{session}")
        return users

    def capped(self, lessons: Sequence[MemoryLesson]) -> list[MemoryLesson]:
        """Without a contributor, the per-search cap: one engagement weight per entity for
        each search, the strongest. (Contributors are capped per day by their profile's
        ledger, `Profile.allow`.)"""
        best: dict[str, MemoryLesson] = {}
        for lesson in lessons:
            held = best.get(lesson.entity_id)
            if held is None or lesson.weight > held.weight:
                best[lesson.entity_id] = lesson
        return list(best.values())
