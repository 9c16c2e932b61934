"""The ltrr-os client: learned retrieval and reranking behind one search call, and feedback."""

from ._async import AsyncLTRRClient
from ._client import LTRRClient
from ._models import (
    FeedbackReceipt,
    FeedbackRejection,
    SearchContext,
    SearchResponse,
    SearchResult,
    Understanding,
)

__all__ = [
    "AsyncLTRRClient",
    "FeedbackReceipt",
    "FeedbackRejection",
    "LTRRClient",
    "SearchContext",
    "SearchResponse",
    "SearchResult",
    "Understanding",
]
