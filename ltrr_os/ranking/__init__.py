"""Ranking the union of candidates: fusion now, a learned LambdaMART ranker on top."""

from ._fusion import RRF_K, ranked, reciprocal_rank_fusion
from ._union import FusedRanker, Provenance, Ranker, UnionCandidate, union_candidates

__all__ = [
    "RRF_K",
    "FusedRanker",
    "Provenance",
    "Ranker",
    "UnionCandidate",
    "ranked",
    "reciprocal_rank_fusion",
    "union_candidates",
]
