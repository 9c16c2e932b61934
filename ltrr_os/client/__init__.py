"""The ltrr-os client: learned retrieval and reranking behind one search call, and feedback."""

from ._client import PROFILES_FILE, AsyncLTRRClient, LTRRClient
from ._models import (
    FeedbackReceipt,
    FeedbackRejection,
    SearchContext,
    SearchResponse,
    SearchResult,
    Understanding,
)

__all__ = [
    "PROFILES_FILE",
    "AsyncLTRRClient",
    "FeedbackReceipt",
    "FeedbackRejection",
    "LTRRClient",
    "SearchContext",
    "SearchResponse",
    "SearchResult",
    "Understanding",
]
