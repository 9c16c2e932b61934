"""The ranker interface and the fused ranker, which ranks until a learned ranker exists."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..understanding import UnderstoodQuery
from ._features import (
    FeatureMatrix,
    Matrix,
    fused_scores,
    popularity_values,
    provenance_arrays,
)
from ._union import UnionCandidate

POPULARITY_TIEBREAK = 1e-4
"""Popularity's weight in the fused score: enough to order equal fusions, never to overturn one."""


class Ranker(ABC):
    """Orders the union of candidates for one query."""

    name: str

    @abstractmethod
    def score(
        self, query: UnderstoodQuery, candidates: Sequence[UnionCandidate], context: Any = None
    ) -> list[float]:
        """One score per candidate, higher first."""

    @abstractmethod
    def score_features(self, features: FeatureMatrix) -> Matrix:
        """One score per row of the union's feature matrix, higher first: the client extracts
        features once per search, ranks with them and logs them for training."""


def _fused(fused: Matrix, popularity: Matrix) -> Matrix:
    ranking: Matrix = fused + POPULARITY_TIEBREAK * popularity
    return ranking


class FusedRanker(Ranker):
    """Reciprocal rank fusion over the strategies that found each candidate, with popularity as a
    small tie-breaker: the ranking before any learned ranker exists, and its fallback."""

    name = "fused"

    def score(
        self, query: UnderstoodQuery, candidates: Sequence[UnionCandidate], context: Any = None
    ) -> list[float]:
        del query, context
        names = list(dict.fromkeys(p.strategy for c in candidates for p in c.provenance))
        _, rank, hit = provenance_arrays(candidates, names)
        scores: list[float] = _fused(
            fused_scores(rank, hit), popularity_values(candidates)
        ).tolist()
        return scores

    def score_features(self, features: FeatureMatrix) -> Matrix:
        return _fused(features.column("fused_score"), features.column("popularity"))
