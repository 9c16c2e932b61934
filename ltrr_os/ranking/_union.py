"""The union of candidates from several strategies, with provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Plain dataclasses, not pydantic models: a search builds one per candidate and strategy hit,
# from data OpenSearch already typed, and the response models validate what they expose.


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a candidate came from: which strategy found it, at which rank and score."""

    strategy: str
    rank: int
    score: float


@dataclass(slots=True)
class UnionCandidate:
    id: str
    source: dict[str, Any] = field(default_factory=dict)
    provenance: list[Provenance] = field(default_factory=list)


def union_candidates(
    lists: Mapping[str, Sequence[tuple[str, float, dict[str, Any]]]],
) -> list[UnionCandidate]:
    """Merge strategy -> [(id, score, source)] lists (in rank order) into one candidate per id,
    in first-seen order, keeping every strategy's rank and score."""
    merged: dict[str, UnionCandidate] = {}
    for strategy, hits in lists.items():
        for rank, (item, score, source) in enumerate(hits, start=1):
            found = merged.get(item)
            if found is None:
                found = merged[item] = UnionCandidate(item, source)
            found.provenance.append(Provenance(strategy, rank, score))
    return list(merged.values())
