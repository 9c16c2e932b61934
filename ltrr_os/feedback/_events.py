"""Feedback events and search records in the shape of OpenSearch User Behavior Insights (UBI)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import LtrrSettings
from ..policy import ENGAGEMENT_WEIGHTS, Decision, DecisionContext

APPLICATION = "ltrr-os"
MAX_FUTURE = timedelta(days=1)
"""Events dated further ahead are refused (clocks drift; a year 9999 is a bug, not a drift)."""
_ID = r"^[A-Za-z0-9._:@/+=-]{1,100}$"  # UBI caps ids at 100 characters
_ID_PATTERN = re.compile(_ID)
UNKNOWN_POSITION = 0
"""`event_attributes.position.ordinal` of an event sent without a position: UBI requires the
field, and 0 is no place on a results page (the dashboard's position histogram shows them apart)."""


def _identifier(value: Any) -> str | None:
    """A foreign user, session or event id as ltrr-os ids are spelt: kept when it already is
    one, else a stable hash of it (a browser's client id may hold spaces)."""
    if value is None or value == "":
        return None
    text = str(value)
    if _ID_PATTERN.match(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def ubi_time(moment: datetime) -> str:
    """A UBI timestamp: UTC with milliseconds and a `Z`, what the UBI plugin's `strict_date_time`
    mapping accepts (an `isoformat()` drops the fraction when it is zero)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def feedback_from_ubi(document: Mapping[str, Any], doc_id: str | None = None) -> dict[str, Any]:
    """The fields of a `FeedbackEvent` from a UBI event as other tools write it (`ubi.js`, the
    UBI plugin): its `query_id` must be the id of an ltrr-os search, its object the catalog's
    id. `doc_id`, the event's id in the index it was read from, makes a re-import a duplicate."""
    attributes = _mapping(document.get("event_attributes"))
    target, place = _mapping(attributes.get("object")), _mapping(attributes.get("position"))
    action = document.get("action_name")
    fields: dict[str, Any] = {
        "search_id": document.get("query_id"),
        "action": re.sub(r"[^a-z0-9_]", "_", action.strip().lower())
        if isinstance(action, str)
        else action,
        "object_id": None if target.get("object_id") is None else str(target["object_id"]),
    }
    ordinal = place.get("ordinal")
    if ordinal not in (None, UNKNOWN_POSITION):
        fields["position"] = ordinal
    if document.get("timestamp") is not None:
        fields["timestamp"] = document["timestamp"]
    user = _identifier(document.get("user_id")) or _identifier(document.get("client_id"))
    if user is not None:
        fields["user_id"] = user
    if (session := _identifier(document.get("session_id"))) is not None:
        fields["session_id"] = session
    event_id = attributes.get("event_id") or (f"ubi:{doc_id}" if doc_id else None)
    if (key := _identifier(event_id)) is not None:
        fields["event_id"] = key
    return fields


class FeedbackEvent(BaseModel):
    """One user action on a search result, keyed by the search it belongs to (UBI `query_id`)."""

    model_config = ConfigDict(extra="forbid")

    search_id: str = Field(pattern=_ID)
    action: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="UBI action_name")
    object_id: str = Field(min_length=1, max_length=512)
    position: int | None = Field(default=None, ge=1, le=10_000)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    user_id: str | None = Field(default=None, pattern=_ID)
    session_id: str | None = Field(default=None, pattern=_ID)
    event_id: str | None = Field(default=None, pattern=_ID)

    @model_validator(mode="before")
    @classmethod
    def _from_ubi(cls, data: Any) -> Any:
        """A UBI event document (it has `action_name`) is read as what it says."""
        if isinstance(data, Mapping) and "action_name" in data:
            return feedback_from_ubi(data)
        return data

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        if value > datetime.now(UTC) + MAX_FUTURE:
            raise ValueError("is more than a day in the future")
        return value

    @property
    def weight(self) -> float:
        """How much this action says the user wanted the object (0 for impressions)."""
        return ENGAGEMENT_WEIGHTS.get(self.action, 0.0)

    @property
    def key(self) -> str:
        """Idempotency key: the given event id, else a hash of what makes the event unique (its
        timestamp only if the sender gave one: a resent event gets a new default timestamp)."""
        if self.event_id:
            return self.event_id
        parts = [self.search_id, self.action, self.object_id, str(self.position)]
        if "timestamp" in self.model_fields_set:
            parts.append(self.timestamp.isoformat())
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def ubi_event(event: FeedbackEvent) -> dict[str, Any]:
    """The UBI event document for a feedback event."""
    attributes: dict[str, Any] = {
        "event_id": event.key,
        "object": {"object_id": event.object_id, "object_id_field": "id"},
    }
    attributes["position"] = {
        "ordinal": UNKNOWN_POSITION if event.position is None else event.position
    }
    document: dict[str, Any] = {
        "application": APPLICATION,
        "action_name": event.action,
        "query_id": event.search_id,
        "timestamp": ubi_time(event.timestamp),
        "message_type": "INFO",
        "event_attributes": attributes,
    }
    for name in ("user_id", "session_id"):
        if (value := getattr(event, name)) is not None:
            document[name] = value
    if event.user_id is not None:
        document["client_id"] = event.user_id
    return document


class CandidateList(BaseModel):
    """One strategy's candidates for a search, in rank order, as logged for replay."""

    ids: list[str]
    failed: bool = False


class SearchRecord(BaseModel):
    """Everything needed to learn from a search later: logged as a UBI query."""

    search_id: str
    text: str
    timestamp: datetime
    user_id: str | None = None
    session_id: str | None = None
    context: DecisionContext
    decision: Decision
    candidates: dict[str, CandidateList]
    results: list[str]
    attributes: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="slot attributes of the shown results (entity -> field -> values), so "
        "feedback can update user profiles without fetching entities",
    )
    ranker: str | None = Field(default=None, description="what ordered the results")
    feature_version: str | None = Field(default=None, description="feature schema of `features`")
    features: list[list[float]] = Field(
        default_factory=list,
        description="the ranking features of each shown result, in `results` order (6 "
        "significant digits): the rows a ranker is trained on, as they were served",
    )


def ubi_query(settings: LtrrSettings, record: SearchRecord) -> dict[str, Any]:
    """The UBI query document: the standard fields UBI tools read, and ltrr-os' own record."""
    features = record.context.query.features
    document: dict[str, Any] = {
        "application": APPLICATION,
        "query_id": record.search_id,
        "query_response_id": record.search_id,
        "timestamp": ubi_time(record.timestamp),
        "user_query": record.text,
        "query_response_hit_ids": record.results,
        "indexes": [settings.index_name("catalog")],
        "query_attributes": {
            "query_type": features.query_type,
            "language": features.language,
            "policy": record.decision.policy,
            "plan": ",".join(f"{k}:{v}" for k, v in sorted(record.decision.plan.items())),
            "propensity": f"{record.decision.probability:.6g}",
        },
        "ltrr": record.model_dump(mode="json"),
    }
    if record.user_id is not None:
        document["client_id"] = record.user_id
    return document
