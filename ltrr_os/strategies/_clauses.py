"""Query clauses derived from the catalog schema, shared by the text-matching strategies."""

from __future__ import annotations

from typing import Any

from ..config import CatalogSchema


def text_clauses(schema: CatalogSchema, text: str, *, fuzzy: bool = True) -> list[dict[str, Any]]:
    """Match the text against every text field: the field itself (typo tolerant), its prefixes,
    its compacted form (names written without spaces or punctuation: 'acdc') and its shingles
    (words in order). Scores add up across fields, so 'artist title' queries gain from both."""
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
