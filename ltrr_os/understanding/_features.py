"""Query features for the strategy bandit: length, script, language, numbers, typos and the
query type (known item, topical, attribute)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._index import ENTITY_TYPE_SLOT, LexiconIndex
from ._language import guess_language, script_counts, script_of
from ._models import QueryFeatures, QueryType, Reading
from ._tagger import Corrections

_YEAR = re.compile(r"^(?:1[89]|20)\d\ds?$")
TITLE_MAX_WORDS = 4
TOPICAL_MIN_WORDS = 10
_TYPE_ORDER: tuple[QueryType, ...] = ("known_item", "attribute", "topical")


def typo_likelihood(words: Sequence[str], corrections: Corrections) -> float:
    """Share of the characters in words the catalog does not know but has a near neighbour of."""
    total = sum(len(word) for word in words)
    typos = sum(len(word) for word in words if corrections.get(word))
    return typos / total if total else 0.0


def _titleness(
    words: Sequence[str], length: int, index: LexiconIndex, corrections: Corrections
) -> float:
    """How much some words look like (part of) a title: catalog words, rare rather than common
    (a misspelt word counts as its correction), in a query short enough to be a title."""
    if not words:
        return 0.0
    rarity = 0.0
    for word in words:
        fixes = corrections.get(word)
        rarity += index.specificity(fixes[0] if fixes else word)
    shortness = (TOPICAL_MIN_WORDS - length) / (TOPICAL_MIN_WORDS - TITLE_MAX_WORDS)
    return rarity / len(words) * min(1.0, max(0.0, shortness))


def query_type_scores(
    words: Sequence[str], readings: Sequence[Reading], index: LexiconIndex, corrections: Corrections
) -> dict[str, float]:
    """Expected over the readings: words covered by attribute slots (and entity types) make an
    attribute query; words covered by a name, and the titleness of the words left, make a
    known-item query; the rest is topical. Words left beside an attribute ("alternative" in
    "alternative 80s") describe rather than title, so they do not count as a title."""
    if not words:
        return {"known_item": 0.0, "attribute": 0.0, "topical": 1.0}
    known = attribute = 0.0
    for reading in readings:
        covered = [False] * len(words)
        names = attributes = 0
        describes = False
        for slot in reading.slots:
            width = slot.end - slot.start
            covered[slot.start : slot.end] = [True] * width
            if slot.slot in index.name_slots:
                names += width
            else:
                attributes += width
                describes = describes or slot.slot != ENTITY_TYPE_SLOT
        left = [word for word, used in zip(words, covered, strict=True) if not used]
        title = 0.0 if describes else _titleness(left, len(words), index, corrections)
        known += reading.likelihood * (names + len(left) * title) / len(words)
        attribute += reading.likelihood * attributes / len(words)
    return {
        "known_item": known,
        "attribute": attribute,
        "topical": max(0.0, 1.0 - known - attribute),
    }


def query_features(
    text: str,
    analysed: str,
    words: Sequence[str],
    tagged: Sequence[str],
    readings: Sequence[Reading],
    index: LexiconIndex,
    corrections: Corrections,
) -> QueryFeatures:
    """Features of a query `text` whose `analysed` part has `words`, the first of them tagged."""
    counts = script_counts(analysed)
    scores = query_type_scores(tagged, readings, index, corrections)
    return QueryFeatures(
        length_chars=len(text),
        length_tokens=len(words),
        script=script_of(counts),
        language=guess_language(analysed, list(words), counts),
        has_numerals=any(ch.isdigit() for ch in analysed),
        has_year=any(_YEAR.match(word) for word in words),
        typo_likelihood=typo_likelihood(tagged, corrections),
        query_type=max(_TYPE_ORDER, key=lambda t: scores[t]),
        query_type_scores=scores,
    )
