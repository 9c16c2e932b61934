"""The client's request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..policy import Decision
from ..ranking import Provenance
from ..understanding import QueryFeatures, Reading

_ID = r"^[A-Za-z0-9._:@/+=-]{1,100}$"  # UBI caps ids at 100 characters


class SearchContext(BaseModel):
    """Who searches and when; all optional. Checked when built and whenever a field is set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    user_id: str | None = Field(default=None, pattern=_ID)
    session_id: str | None = Field(default=None, pattern=_ID)
    timestamp: datetime | None = None


class SearchResult(BaseModel):
    id: str
    rank: int
    score: float
    entity_type: str | None = None
    title: str | None = None
    source: dict[str, Any] = Field(default_factory=dict)
    provenance: list[Provenance]


class Understanding(BaseModel):
    """What query understanding made of the query (its best reading first)."""

    features: QueryFeatures
    readings: list[Reading]


class SearchResponse(BaseModel):
    search_id: str
    query: str
    results: list[SearchResult]
    candidates: int = Field(description="size of the union of all strategies' candidates")
    decision: Decision
    understanding: Understanding
    partial: bool = Field(description="a strategy failed or timed out; its candidates are missing")
    errors: dict[str, str] = Field(default_factory=dict, description="strategy -> what failed")
    ranker: str
    timings_ms: dict[str, float] = Field(
        description="stage -> ms: understand, decide, retrieve (its round_trip, and opensearch: "
        "the slowest strategy's took), rank, log, total"
    )


class FeedbackRejection(BaseModel):
    index: int = Field(description="position of the event in the submitted batch")
    reason: str


class FeedbackReceipt(BaseModel):
    """What became of a batch of feedback events."""

    accepted: int = Field(default=0, description="stored in the spool, bound for the UBI log")
    duplicates: int = Field(default=0, description="repeats of events this process already took")
    rejected: list[FeedbackRejection] = Field(default_factory=list)
