"""Ranking the union of candidates: fusion first, then a LambdaMART ranker learned from the
logged feedback, both over one feature definition shared by serving, logging and training."""

from ._features import (
    NOT_RETRIEVED_RANK,
    FeatureExtractor,
    FeatureMatrix,
    FeatureSchema,
    Matrix,
)
from ._fusion import RRF_K, ranked, reciprocal_rank_fusion
from ._lambdamart import (
    LambdaMARTRanker,
    RankerReport,
    ranker_from_bytes,
    ranker_to_bytes,
)
from ._metrics import ranking_quality
from ._rankers import FusedRanker, Ranker
from ._train import (
    GRADES,
    IMPRESSION,
    LogCounts,
    LoggedSearches,
    TrainConfig,
    fit_ranker,
    load_logged_searches,
    logged_searches,
)
from ._union import Provenance, UnionCandidate, union_candidates

__all__ = [
    "GRADES",
    "IMPRESSION",
    "NOT_RETRIEVED_RANK",
    "RRF_K",
    "FeatureExtractor",
    "FeatureMatrix",
    "FeatureSchema",
    "FusedRanker",
    "LambdaMARTRanker",
    "LogCounts",
    "LoggedSearches",
    "Matrix",
    "Provenance",
    "Ranker",
    "RankerReport",
    "TrainConfig",
    "UnionCandidate",
    "fit_ranker",
    "load_logged_searches",
    "logged_searches",
    "ranked",
    "ranker_from_bytes",
    "ranker_to_bytes",
    "ranking_quality",
    "reciprocal_rank_fusion",
    "union_candidates",
]
