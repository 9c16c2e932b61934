"""Ranking quality of grouped, graded rows (logged searches), with the same measures as the
judged-set evaluation, so that an nDCG@10 means the same thing everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import ir_measures
import numpy as np
import numpy.typing as npt
from ir_measures import RR, nDCG

QUALITY_MEASURES = {"ndcg@10": nDCG @ 10, "mrr": RR}
"""Linear gain (the label), log2 discount; MRR counts any label above 0 as relevant."""


def ranking_quality(
    labels: npt.NDArray[np.int32], scores: npt.NDArray[np.float64], sizes: Sequence[int]
) -> dict[str, float]:
    """Mean nDCG@10 and MRR over groups of consecutive rows (sizes), each ranked by score.
    Groups without a positive label count as 0 for both: keep only engaged groups."""
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    start = 0
    for group, size in enumerate(sizes):
        key = str(group)
        qrels[key] = {str(i): int(labels[start + i]) for i in range(size)}
        # Ranks, not raw scores: equal scores keep the logged order, whatever their scale.
        order = np.argsort(-scores[start : start + size], kind="stable")
        run[key] = {str(i): float(size - rank) for rank, i in enumerate(order.tolist())}
        start += size
    if not qrels:
        return dict.fromkeys(QUALITY_MEASURES, 0.0)
    found = ir_measures.calc_aggregate(list(QUALITY_MEASURES.values()), qrels, run)
    return {name: round(float(found.get(m, 0.0)), 4) for name, m in QUALITY_MEASURES.items()}
