"""`ltrr evaluate --logged`: the rankers on the newest logged searches, labelled by engagement."""

from __future__ import annotations

import statistics
from datetime import datetime

from pydantic import BaseModel, Field

from .._errors import LtrrError
from ..ranking import LambdaMARTRanker, LoggedSearches
from ._evaluate import EvaluationRow


class LoggedEvaluationReport(BaseModel):
    holdout: float
    searches: int = Field(description="held-out searches with impressions and engagement")
    since: datetime = Field(description="time of the oldest held-out search")
    rows: list[EvaluationRow]
    seen_in_training: int = Field(
        default=0,
        description="held-out searches no newer than the model's training data: it may have "
        "learned from them (train with --holdout to keep them out)",
    )


def evaluate_logged(
    data: LoggedSearches, holdout: float, ranker: LambdaMARTRanker | None
) -> LoggedEvaluationReport:
    """nDCG@10 and MRR of the logged order, the fused ranking and the learned ranker on the
    newest `holdout` share of the engaged searches (the share `train-ranker --holdout` leaves
    out), each reordering the results the search showed."""
    _, held = data.engaged().split_by_time(holdout)
    if not held.sizes:
        raise LtrrError(
            "no logged search with impressions and engagement in the holdout: log more searches "
            "with feedback, or hold out a larger share"
        )
    scores = {"logged": held.logged_order(), "fused": held.fused()}
    seen = 0
    if ranker is not None:
        scores[ranker.name] = ranker.score_features(held.matrix())
        seen = sum(t <= ranker.report.trained_until for t in held.timestamps)
    shown = round(statistics.fmean(held.sizes), 1)
    return LoggedEvaluationReport(
        holdout=holdout,
        searches=len(held.sizes),
        since=held.timestamps[0],
        rows=[
            EvaluationRow(name=name, strategies=[], metrics=held.quality(s), mean_candidates=shown)
            for name, s in scores.items()
        ],
        seen_in_training=seen,
    )
