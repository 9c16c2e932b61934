"""Words of a query or of catalog text, cut the same way on both sides so that they meet.

For Latin text the words are those of `normalize` (folded, '&' read as 'and', apostrophes
dropped so "80's" is "80s", a curly one too); other scripts keep their letters instead of
losing them, so a Cyrillic or Japanese query still has words to count, match and search with.
"""

from __future__ import annotations

import re
import unicodedata

from .._text import fold

_WORD = re.compile(r"[^\W_]+")
_APOSTROPHES = str.maketrans({"'": None, "\u2019": None, "&": " and "})


def fold_words(text: str) -> str:
    """Folded text with apostrophes dropped, '&' as 'and' and no combining marks left (marks
    that fold keeps, such as Devanagari vowel signs, would otherwise cut words in two)."""
    if text.isascii():
        return text.lower().translate(_APOSTROPHES)
    folded = fold(text).translate(_APOSTROPHES)
    return "".join(ch for ch in folded if not unicodedata.category(ch).startswith("M"))


def tokenize(text: str) -> list[str]:
    """The words of `text`: runs of letters and digits after folding."""
    return _WORD.findall(fold_words(text))
