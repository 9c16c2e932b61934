"""Fusion of several rankings into one, as pure functions: the fused score ranks candidates when
no learned ranker exists yet, and is a feature for the one that does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]],
    weights: Mapping[str, float] | None = None,
    k: int = RRF_K,
) -> dict[str, float]:
    """Sum over rankings of weight / (k + rank): robust to incomparable score scales."""
    fused: dict[str, float] = {}
    for name, ids in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, item in enumerate(ids, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Ids by descending score, ties broken by id so the order is deterministic."""
    return sorted(scores, key=lambda item: (-scores[item], item))
