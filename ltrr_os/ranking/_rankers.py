"""The ranker interface and the fused ranker, which ranks until a learned ranker exists."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ._features import FeatureMatrix, Matrix

POPULARITY_TIEBREAK = 1e-4
"""Popularity's weight in the fused score: enough to order equal fusions, never to overturn one."""


class Ranker(ABC):
    """Orders the union of candidates for one query, from its feature matrix."""

    name: str

    @abstractmethod
    def score_features(self, features: FeatureMatrix) -> Matrix:
        """One score per row of the union's feature matrix, higher first: the pipeline extracts
        features once per search, ranks with them and logs them for training."""


class FusedRanker(Ranker):
    """Weighted reciprocal rank fusion over the strategies that found each candidate (the
    `fused_score` feature), with popularity as a small tie-breaker: the ranking before any
    learned ranker exists, and its fallback."""

    name = "fused"

    def score_features(self, features: FeatureMatrix) -> Matrix:
        ranking: Matrix = features.column("fused_score") + POPULARITY_TIEBREAK * features.column(
            "popularity"
        )
        return ranking
