"""Query understanding: slot tagging with kept ambiguity, query features and memory keys,
all derived from a lexicon built from the catalog itself."""

from ._index import ENTITY_TYPE_SLOT
from ._lexicon import Lexicon, build_lexicon
from ._models import QueryFeatures, QueryType, Reading, SlotMatch, UnderstoodQuery
from ._tokens import tokenize
from ._understand import understand

__all__ = [
    "ENTITY_TYPE_SLOT",
    "Lexicon",
    "QueryFeatures",
    "QueryType",
    "Reading",
    "SlotMatch",
    "UnderstoodQuery",
    "build_lexicon",
    "tokenize",
    "understand",
]
