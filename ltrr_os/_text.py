"""Text normalisation shared by ingest, query understanding and the memory index, so that a query
and the entity it names meet on the same key."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NON_WORD = re.compile(r"[^0-9a-z]+")
MAX_KEY_CHARS = 100


def fold(text: str) -> str:
    """Lowercase, accents removed (Beyoncé -> beyonce), compatibility forms unified (ﬁ -> fi)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def normalize(text: str) -> str:
    """Folded words separated by single spaces; '&' reads as 'and', other punctuation is dropped."""
    folded = fold(text).replace("&", " and ").replace("'", "")
    return _NON_WORD.sub(" ", folded).strip()


def slug(text: str) -> str:
    """A URL- and id-safe form of normalize(text)."""
    return normalize(text).replace(" ", "-")


def memory_key(query: str) -> str:
    """The key of a query in the Q2E memory (a rank_features key: no dots, bounded length)."""
    return normalize(query)[:MAX_KEY_CHARS].strip()


def entity_id(entity_type: str, *parts: str) -> str:
    """A readable, deterministic id ('track:green-day--basket-case'); long ones end in a hash."""
    body = "--".join(slug(part) for part in parts if part) or "unnamed"
    if len(body) > 160:
        digest = hashlib.sha1(body.encode()).hexdigest()[:12]
        body = f"{body[:147]}-{digest}"
    return f"{entity_type}:{body}"
