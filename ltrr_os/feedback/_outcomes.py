"""From a logged search and the engagements it received to what the policy learns."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..policy import Decision, Outcome, StrategyOutcome
from ._events import CandidateList, SearchRecord


def outcome_of(
    decision: Decision,
    candidates: Mapping[str, CandidateList],
    engagements: Mapping[str, float],
) -> Outcome:
    """Per chosen strategy: the best-ranked engaged item in what it retrieved, and its weight.

    A strategy that failed is marked so (the policy must not learn that it found nothing)."""
    outcomes: dict[str, StrategyOutcome] = {}
    for choice in decision.choices:
        if choice.size <= 0:
            continue
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


@dataclass
class _Pending:
    record: SearchRecord
    created: float
    engagements: dict[str, float] = field(default_factory=dict)


class PendingSearches:
    """Searches waiting for engagement, and recently settled ones (so late events still find
    their search without a lookup). Bounded: the oldest are settled or forgotten first; and kept
    without what learning does not need (the logged features; and once settled, the candidates),
    so that memory stays flat under load: ~30 KB per pending search, ~20 KB per settled one.
    Thread-safe."""

    def __init__(self, max_pending: int = 20_000, max_settled: int = 1_000) -> None:
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._settled: OrderedDict[str, SearchRecord] = OrderedDict()
        self._max_pending = max_pending
        self._max_settled = max_settled
        self._lock = threading.Lock()

    def add(self, record: SearchRecord) -> list[tuple[SearchRecord, Outcome]]:
        """Track a new search; returns searches settled early because the table is full."""
        record = record.model_copy(update={"features": []})  # logged already; learning needs none
        with self._lock:
            self._pending[record.search_id] = _Pending(record, time.monotonic())
            overflow = []
            while len(self._pending) > self._max_pending:
                _, oldest = self._pending.popitem(last=False)
                overflow.append(self._settle(oldest))
            return overflow

    def find(self, search_id: str) -> tuple[SearchRecord, bool] | None:
        """The search and whether it is still pending, if this process knows it."""
        with self._lock:
            if (pending := self._pending.get(search_id)) is not None:
                return pending.record, True
            if (record := self._settled.get(search_id)) is not None:
                return record, False
            return None

    def remember_settled(self, record: SearchRecord) -> None:
        """Keep a search loaded from the log for further late events."""
        with self._lock:
            self._keep_settled(record)

    def engage(self, search_id: str, object_id: str, weight: float) -> bool:
        """Record an engagement; False when the search is no longer pending."""
        with self._lock:
            pending = self._pending.get(search_id)
            if pending is None:
                return False
            pending.engagements[object_id] = max(weight, pending.engagements.get(object_id, 0.0))
            return True

    def settle(
        self, older_than_s: float, search_id: str | None = None
    ) -> list[tuple[SearchRecord, Outcome]]:
        """Settle pending searches at least this old (or the one named): their outcome is final."""
        now = time.monotonic()
        with self._lock:
            if search_id is not None:
                ready = [search_id] if search_id in self._pending else []
            else:
                ready = [s for s, p in self._pending.items() if now - p.created >= older_than_s]
            return [self._settle(self._pending.pop(s)) for s in ready]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def _settle(self, pending: _Pending) -> tuple[SearchRecord, Outcome]:
        record = pending.record
        outcome = outcome_of(record.decision, record.candidates, pending.engagements)
        self._keep_settled(record)
        return record, outcome

    def _keep_settled(self, record: SearchRecord) -> None:
        """What a late event needs: the text, the user and the shown results' attributes."""
        self._settled[record.search_id] = record.model_copy(
            update={"candidates": {}, "features": []}
        )
        while len(self._settled) > self._max_settled:
            self._settled.popitem(last=False)
