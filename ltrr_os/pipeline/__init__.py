"""The search pipeline shared by serving, evaluation and simulation."""

from ._cache import CachedRetriever
from ._pipeline import (
    Planned,
    Ranking,
    Retriever,
    SearchPipeline,
    Served,
    attributes,
    opensearch_retriever,
)

__all__ = [
    "CachedRetriever",
    "Planned",
    "Ranking",
    "Retriever",
    "SearchPipeline",
    "Served",
    "attributes",
    "opensearch_retriever",
]
