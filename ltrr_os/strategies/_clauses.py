"""Query clauses derived from the catalog schema, shared by the text-matching strategies.

What a text costs OpenSearch grows with its tokens (clauses) and, for typo tolerance, with the
length of each term (a Levenshtein automaton per term): both are bounded here, by construction,
whatever the script, so no text can make a strategy slow in query rewrite, where the search's
`timeout` does not apply."""

from __future__ import annotations

import unicodedata
from typing import Any

from ..config import CatalogSchema

MAX_TEXT_WORDS = 32
"""Tokens of a text that are matched. With FUZZY_WORDS, what keeps a strategy's query under
OpenSearch's limit of 1,024 clauses, where a typo-tolerant word counts once per expansion (up to
20 per field, 50 for a compacted form): for the shipped schemas at most 807 clauses (music:
3 x (10 x 20 + 50 + 10 + 9)) or 860 (documents) typo tolerant, and 288 exact."""
LEXICAL_MAX_WORDS = 64
"""Tokens the lexical strategy matches: it has one set of clauses (structured has one per
reading), so long exact texts (abstracts as queries) keep twice as many: at most 640 clauses."""
FUZZY_WORDS = 10
"""Texts of at most this many tokens are matched typo tolerant; longer ones exactly (enough of
their words match that one typo does not matter)."""
MAX_FUZZY_TERM_CHARS = 20
"""Typo tolerance only for terms up to this long: a fuzzy term's automaton grows with its
length (a 512-letter word took seconds to rewrite, 510 CJK characters were 'too complex')."""
MAX_COMPACT_FUZZY_CHARS = 30
"""The compacted form ('acdc', 'taylorswiftlovestory') is one term: typo tolerant up to this."""
MAX_TOKEN_UNITS = 255
"""The standard tokenizer's longest token, in UTF-16 units: longer runs become several tokens."""
_SINGLE_TOKEN_BLOCKS = (
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)
_COMPLEX_CONTEXT_BLOCKS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x1950, 0x19DF),  # Tai Le, New Tai Lue
    (0x1A20, 0x1AAF),  # Tai Tham
    (0xA9E0, 0xA9FF),  # Myanmar extended B
    (0xAA60, 0xAADF),  # Myanmar extended A, Tai Viet
)


def _single_token(char: str) -> bool:
    """Characters the standard tokenizer emits one token each for (ideographs, kana, symbols
    such as emoji), or may (characters this Python's Unicode tables do not know yet)."""
    code = ord(char)
    category = unicodedata.category(char)
    return (
        category[0] == "S"
        or category in ("Cn", "Co")
        or any(low <= code <= high for low, high in _SINGLE_TOKEN_BLOCKS)
    )


def _word_char(char: str) -> bool:
    return char == "_" or unicodedata.category(char)[0] in "LNM"


def _complex_context(char: str) -> bool:
    """Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, Tai): the
    tokenizer keeps their runs apart from other letters."""
    code = ord(char)
    return any(low <= code <= high for low, high in _COMPLEX_CONTEXT_BLOCKS)


def text_tokens(text: str) -> list[tuple[int, int]]:
    """(start, end) of the tokens OpenSearch's standard tokenizer makes of the text, or more:
    runs of letters, digits and marks (cut where a script written without spaces starts or
    ends, and every 255 UTF-16 units, as the tokenizer cuts them), and each ideograph, kana or
    symbol on its own. Never fewer than the tokenizer's, so the clause bounds computed from
    them hold (a test checks this against a node)."""
    tokens: list[tuple[int, int]] = []
    start: int | None = None
    units, complex_run = 0, False
    for position, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        single, word = _single_token(char), _word_char(char)
        mark = unicodedata.category(char)[0] == "M"
        switched = word and not mark and _complex_context(char) != complex_run
        if start is not None and (
            single or not word or switched or units + width > MAX_TOKEN_UNITS
        ):
            tokens.append((start, position))
            start = None
        if single:
            tokens.append((position, position + 1))
        elif word:
            if start is None:
                start, units, complex_run = position, 0, _complex_context(char)
            units += width
    if start is not None:
        tokens.append((start, len(text)))
    return tokens


def bounded_text(text: str, max_tokens: int) -> str:
    """The text up to the end of its `max_tokens`-th token (whitespace normalised)."""
    return _cut(text, text_tokens(text), max_tokens)


def _cut(text: str, tokens: list[tuple[int, int]], max_tokens: int) -> str:
    cut = text if len(tokens) <= max_tokens else text[: tokens[max_tokens - 1][1]]
    return " ".join(cut.split())


def text_clauses(
    schema: CatalogSchema,
    text: str,
    *,
    fuzzy_words: int = FUZZY_WORDS,
    max_words: int = MAX_TEXT_WORDS,
) -> list[dict[str, Any]]:
    """Match the text against every text field: the field itself (typo tolerant when the text has
    at most `fuzzy_words` tokens), its prefixes, its compacted form (names written without spaces
    or punctuation: 'acdc') and its shingles (words in order). Scores add up across fields, so
    'artist title' queries gain from both. Only the first `max_words` tokens count, and typo
    tolerance applies only to short texts of short terms."""
    tokens = text_tokens(text)
    text = _cut(text, tokens, max_words)  # holds the first min(len(tokens), max_words) tokens
    # A term never spans whitespace, so no term is longer than the longest word.
    fuzzy = 0 < min(len(tokens), max_words) <= fuzzy_words and all(
        len(word) <= MAX_FUZZY_TERM_CHARS for word in text.split()
    )
    compact_fuzzy = fuzzy and len(text.replace(" ", "")) <= MAX_COMPACT_FUZZY_CHARS
    clauses: list[dict[str, Any]] = []
    for name, spec in schema.text_fields.items():
        match: dict[str, Any] = {"query": text, "boost": spec.boost}
        if fuzzy:
            match.update(fuzziness="AUTO", prefix_length=1, max_expansions=20)
        clauses.append({"match": {name: match}})
        if spec.analysis == "prose":
            continue
        clauses.append(
            {
                "match": {
                    f"{name}.prefix": {
                        "query": text,
                        "operator": "and",
                        "boost": round(spec.boost * 0.3, 3),
                    }
                }
            }
        )
        compact: dict[str, Any] = {"query": text, "boost": round(spec.boost * 0.5, 3)}
        if compact_fuzzy:
            compact.update(fuzziness="AUTO", prefix_length=1)
        clauses.append({"match": {f"{name}.compact": compact}})
        if spec.analysis == "title":
            clauses.append(
                {
                    "match": {
                        f"{name}.shingles": {"query": text, "boost": round(spec.boost * 0.5, 3)}
                    }
                }
            )
    return clauses
