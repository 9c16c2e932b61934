"""The union of candidates from several strategies, with provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field


class Provenance(BaseModel):
    """Where a candidate came from: which strategy found it, at which rank and score."""

    strategy: str
    rank: int
    score: float


class UnionCandidate(BaseModel):
    id: str
    source: dict[str, Any] = Field(default_factory=dict)
    provenance: list[Provenance]


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
                found = merged[item] = UnionCandidate(id=item, source=source, provenance=[])
            found.provenance.append(Provenance(strategy=strategy, rank=rank, score=score))
    return list(merged.values())
