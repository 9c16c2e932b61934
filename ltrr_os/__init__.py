"""ltrr-os: learning to rank and retrieve on OpenSearch."""

from importlib.metadata import PackageNotFoundError, version

from ._errors import ConfigError, LtrrError, OpenSearchUnavailableError, QueryError
from .client import AsyncLTRRClient, LTRRClient, SearchContext, SearchResponse
from .config import LtrrSettings, load_settings
from .feedback import FeedbackEvent

try:
    __version__ = version("ltrr-os")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncLTRRClient",
    "ConfigError",
    "FeedbackEvent",
    "LTRRClient",
    "LtrrError",
    "LtrrSettings",
    "OpenSearchUnavailableError",
    "QueryError",
    "SearchContext",
    "SearchResponse",
    "__version__",
    "load_settings",
]
