"""Ranking the union of candidates: fusion now, a learned LambdaMART ranker on top."""

from ._fusion import RRF_K, ranked, reciprocal_rank_fusion

__all__ = ["RRF_K", "ranked", "reciprocal_rank_fusion"]
