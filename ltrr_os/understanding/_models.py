"""What understand() returns: the query's features for the bandit, its readings for structured
search and its keys for the Q2E memory."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

QueryType = Literal["known_item", "topical", "attribute"]


class QueryFeatures(BaseModel):
    """Query context features for choosing retrieval strategies."""

    length_chars: int
    length_tokens: int = Field(description="words in the first 2,000 characters")
    script: str = Field(
        description="latin, cyrillic, greek, arabic, hebrew, cjk, hangul, devanagari, thai, "
        "other (a script not listed), mixed, or none (no letters)"
    )
    language: str = Field(description="ISO 639-1 guess, or und")
    has_numerals: bool
    has_year: bool
    typo_likelihood: float = Field(ge=0, le=1)
    query_type: QueryType
    query_type_scores: dict[str, float] = Field(description="the three types, summing to 1")


class SlotMatch(BaseModel):
    """Query words [start, end) read as a slot value."""

    slot: str
    value: str = Field(description="the canonical value, as the catalog spells it")
    confidence: float = Field(ge=0, le=1, description="how surely the words name the value")
    start: int
    end: int
    matched: str = Field(description="the query words matched")
    fuzzy: bool = Field(description="matched through a typo correction")


class Reading(BaseModel):
    """One interpretation of the query: slot values, and the words left as plain text."""

    slots: list[SlotMatch]
    residual: str
    likelihood: float = Field(ge=0, le=1)


class UnderstoodQuery(BaseModel):
    """A query as query understanding sees it (see understand())."""

    text: str
    normalized: str = Field(description="the tokens joined by spaces")
    tokens: list[str] = Field(description="folded words of the first 2,000 characters")
    features: QueryFeatures
    readings: list[Reading] = Field(description="most likely first; the plain one is always there")
    memory_keys: list[str] = Field(
        description="Q2E memory keys: memory_key(text), then those of the likeliest readings "
        "with canonical values substituted; at most 3"
    )
