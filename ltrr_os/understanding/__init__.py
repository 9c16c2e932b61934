"""Query understanding: slot tagging with kept ambiguity, query features and memory keys,
all derived from a lexicon built from the catalog itself."""

from ._lexicon import Lexicon, build_lexicon
from ._models import QueryFeatures, Reading, SlotMatch, UnderstoodQuery
from ._understand import understand

__all__ = [
    "Lexicon",
    "QueryFeatures",
    "Reading",
    "SlotMatch",
    "UnderstoodQuery",
    "build_lexicon",
    "understand",
]
