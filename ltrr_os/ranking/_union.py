"""The union of candidates from several strategies, with provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Plain dataclasses, not pydantic models: a search builds one per candidate and strategy hit,
# from data OpenSearch already typed, and the response models validate what they expose.


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a candidate came from: which strategy found it, at which rank and score, and for
    an expansion (related), the hits it was found from."""

    strategy: str
    rank: int
    score: float
    via: tuple[str, ...] = ()


@dataclass(slots=True)
class UnionCandidate:
    id: str
    source: dict[str, Any] = field(default_factory=dict)
    provenance: list[Provenance] = field(default_factory=list)


def union_candidates(
    lists: Mapping[str, Sequence[tuple[str, float, dict[str, Any]]]],
    via: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> list[UnionCandidate]:
    """Merge strategy -> [(id, score, source)] lists (in rank order) into one candidate per id,
    in first-seen order, keeping every strategy's rank and score (and `via`: strategy -> id ->
    the hits an expansion found it from)."""
    merged: dict[str, UnionCandidate] = {}
    for strategy, hits in lists.items():
        origins = (via or {}).get(strategy, {})
        for rank, (item, score, source) in enumerate(hits, start=1):
            found = merged.get(item)
            if found is None:
                found = merged[item] = UnionCandidate(item, source)
            found.provenance.append(Provenance(strategy, rank, score, tuple(origins.get(item, ()))))
    return list(merged.values())
