"""Query clauses derived from the catalog schema, shared by the text-matching strategies."""

from __future__ import annotations

from typing import Any

from ..config import CatalogSchema

MAX_TEXT_WORDS = 32
"""Words of a text that are matched. With FUZZY_WORDS, what keeps a strategy's query under
OpenSearch's limit of 1,024 clauses, where a typo-tolerant word counts once per expansion (up to
20 per field, 50 for a compacted form): for the shipped schemas at most 807 clauses (music:
3 x (10 x 20 + 50 + 10 + 9)) or 860 (documents) typo tolerant, and 288 exact."""
LEXICAL_MAX_WORDS = 64
"""Words the lexical strategy matches: it has one set of clauses (structured has one per reading),
so long exact texts (abstracts as queries) keep twice as many words: at most 640 clauses."""
FUZZY_WORDS = 10
"""Texts of at most this many words are matched typo tolerant; longer ones exactly (enough of
their words match that one typo does not matter)."""


def text_clauses(
    schema: CatalogSchema,
    text: str,
    *,
    fuzzy_words: int = FUZZY_WORDS,
    max_words: int = MAX_TEXT_WORDS,
) -> list[dict[str, Any]]:
    """Match the text against every text field: the field itself (typo tolerant when the text has
    at most `fuzzy_words` words), its prefixes, its compacted form (names written without spaces
    or punctuation: 'acdc') and its shingles (words in order). Scores add up across fields, so
    'artist title' queries gain from both. Only the first `max_words` words count."""
    words = text.split()
    fuzzy = len(words) <= fuzzy_words
    text = " ".join(words[:max_words])
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
        if fuzzy:
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
