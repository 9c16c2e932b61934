"""understand(): a query's words, features, readings and memory keys."""

from __future__ import annotations

from .._text import memory_key
from ._features import query_features
from ._index import ENTITY_TYPE_SLOT, compiled
from ._lexicon import Lexicon
from ._models import Reading, SlotMatch, UnderstoodQuery
from ._tagger import Segmentation, find_spans, likelihoods, segment
from ._tokens import tokenize

MAX_ANALYSED_CHARS = 2_000
"""Only this much of a query is analysed: longer text is pasted prose, not a query."""
MAX_TAGGED_TOKENS = 64
"""Only the first words are tagged, which bounds the work for any input."""
MAX_MEMORY_KEYS = 3
MIN_KEY_LIKELIHOOD = 0.1
"""A reading less likely than this is kept for structured search but gives no memory key."""


def _reading(path: Segmentation, likelihood: float, words: list[str]) -> Reading:
    covered = {i for span in path.spans for i in range(span.start, span.end)}
    return Reading(
        slots=[
            SlotMatch(
                slot=span.candidate.slot,
                value=span.candidate.value,
                confidence=span.candidate.confidence,
                start=span.start,
                end=span.end,
                matched=" ".join(words[span.start : span.end]),
                fuzzy=span.fuzzy,
            )
            for span in sorted(path.spans, key=lambda s: s.start)
        ],
        residual=" ".join(w for i, w in enumerate(words) if i not in covered),
        likelihood=likelihood,
    )


def _memory_keys(text: str, words: list[str], readings: list[Reading]) -> list[str]:
    """The query's own key, then the keys of the likeliest readings with each slot's words
    replaced by its canonical value ("80s rock" -> "1980s rock"); entity-type words stay, since
    predicted queries are built from field values, not from type names."""
    keys = [key] if (key := memory_key(text)) else []
    for reading in readings:
        if len(keys) >= MAX_MEMORY_KEYS or reading.likelihood < MIN_KEY_LIKELIHOOD:
            break
        substituted = list(words)
        for slot in reversed(reading.slots):
            if slot.slot != ENTITY_TYPE_SLOT:
                substituted[slot.start : slot.end] = tokenize(slot.value)
        key = memory_key(" ".join(substituted))
        if key and key not in keys:
            keys.append(key)
    return keys


def understand(text: str, lexicon: Lexicon) -> UnderstoodQuery:
    """Words, features, readings (most likely first) and Q2E memory keys of a query.

    Never raises on any text; the same text and lexicon always give the same result."""
    index = compiled(lexicon)
    analysed = text[:MAX_ANALYSED_CHARS]
    words = tokenize(analysed)
    tagged = words[:MAX_TAGGED_TOKENS]
    corrections = {word: index.corrections(word) for word in tagged}
    paths = segment(tagged, find_spans(tagged, index, corrections), index)
    readings = [
        _reading(path, likelihood, words)
        for path, likelihood in zip(paths, likelihoods(paths), strict=True)
    ]
    return UnderstoodQuery(
        text=text,
        normalized=" ".join(words),
        tokens=words,
        features=query_features(text, analysed, words, tagged, readings, index, corrections),
        readings=readings,
        memory_keys=_memory_keys(text, words, readings),
    )
