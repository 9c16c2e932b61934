"""The union of candidates from several strategies, with provenance, and the ranker interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from ..understanding import UnderstoodQuery
from ._fusion import reciprocal_rank_fusion


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


class Ranker(ABC):
    """Orders the union of candidates for one query."""

    name: str

    @abstractmethod
    def score(
        self, query: UnderstoodQuery, candidates: Sequence[UnionCandidate], context: Any = None
    ) -> list[float]:
        """One score per candidate, higher first."""


class FusedRanker(Ranker):
    """Reciprocal rank fusion over the strategies that found each candidate, with popularity as a
    small tie-breaker: the ranking before any learned ranker exists, and its fallback."""

    name = "fused"

    def score(
        self, query: UnderstoodQuery, candidates: Sequence[UnionCandidate], context: Any = None
    ) -> list[float]:
        del query, context
        rankings: dict[str, list[tuple[int, str]]] = {}
        for candidate in candidates:
            for p in candidate.provenance:
                rankings.setdefault(p.strategy, []).append((p.rank, candidate.id))
        fused = reciprocal_rank_fusion(
            {name: [item for _, item in sorted(hits)] for name, hits in rankings.items()}
        )
        return [
            fused.get(c.id, 0.0) + 1e-4 * float(c.source.get("popularity_value") or 0.0)
            for c in candidates
        ]
