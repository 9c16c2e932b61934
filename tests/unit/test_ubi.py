"""What ltrr-os writes is UBI 1.3.0 as the schema and the UBI plugin's mapping want it, and UBI
events other tools write are read as feedback."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from ltrr_os.config import LtrrSettings
from ltrr_os.feedback import FeedbackEvent, feedback_from_ubi, ubi_event, ubi_query

from ._ubi_schema import EVENT, QUERY
from .test_learning import _record

# The UBI plugin maps `timestamp` as strict_date_time: a fraction of a second and a zone.
STRICT_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{1,9}(Z|[+-]\d{2}:\d{2})$")


def _problems(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    return [error.message for error in Draft202012Validator(schema).iter_errors(document)]


@pytest.mark.parametrize(
    "fields",
    [
        {"search_id": "s1", "action": "click", "object_id": "track:1", "position": 3},
        {"search_id": "s1", "action": "playback", "object_id": "track:1"},  # no position
        {
            "search_id": "s" * 100,
            "action": "add_to_favorites",
            "object_id": "x" * 256,
            "user_id": "u" * 100,
            "session_id": "v" * 100,
            "timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no fraction of a second
        },
    ],
)
def test_events_validate_against_the_ubi_event_schema(fields: dict[str, Any]) -> None:
    document = ubi_event(FeedbackEvent.model_validate(fields))
    assert _problems(EVENT, document) == []
    assert STRICT_DATE_TIME.match(document["timestamp"]), document["timestamp"]


def test_an_event_without_a_position_says_so_in_the_field_ubi_requires() -> None:
    document = ubi_event(FeedbackEvent(search_id="s1", action="playback", object_id="t"))
    assert document["event_attributes"]["position"] == {"ordinal": 0}


def test_search_records_validate_against_the_ubi_query_schema() -> None:
    document = ubi_query(LtrrSettings(), _record())
    assert _problems(QUERY, document) == []
    assert STRICT_DATE_TIME.match(document["timestamp"])
    assert document["user_query"] == "queen bohemian"


def test_ids_longer_than_ubi_allows_are_refused() -> None:
    with pytest.raises(ValidationError, match="search_id"):
        FeedbackEvent(search_id="s" * 101, action="click", object_id="t")


def test_an_event_ubi_js_wrote_is_read_as_what_it_says() -> None:
    written_by_ubi_js = {
        "application": "shop",
        "action_name": "Click",
        "query_id": "0f8e5c2e9a6b4d5f8e0c1b2a3d4e5f60",
        "client_id": "BugsBunny::Firefox @0967084",  # a space: not an ltrr-os id as it is
        "session_id": "84266fdbd31d4c2c6d0665f7e8380fa3",
        "timestamp": "2026-11-30T10:00:00.000Z",
        "message_type": "CLICK_THROUGH",
        "event_attributes": {
            "object": {"object_id": 1234, "object_id_field": "id"},
            "position": {"ordinal": 2},
            "page_id": "/search",
        },
    }
    event = FeedbackEvent.model_validate(written_by_ubi_js)
    assert (event.search_id, event.action, event.object_id, event.position) == (
        "0f8e5c2e9a6b4d5f8e0c1b2a3d4e5f60",
        "click",
        "1234",
        2,
    )
    assert event.timestamp == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert event.session_id == "84266fdbd31d4c2c6d0665f7e8380fa3"
    assert str(event.user_id).startswith("h-")  # hashed, stable
    assert event.user_id == FeedbackEvent.model_validate(written_by_ubi_js).user_id


def test_a_foreign_event_keeps_an_id_from_its_document_and_ltrr_os_events_keep_theirs() -> None:
    foreign = {"action_name": "click", "query_id": "q", "timestamp": "2026-11-30T10:00:00Z"}
    first = FeedbackEvent.model_validate(
        {**feedback_from_ubi(foreign, doc_id="ubi_events:abc"), "object_id": "t"}
    )
    again = FeedbackEvent.model_validate(
        {**feedback_from_ubi(foreign, doc_id="ubi_events:abc"), "object_id": "t"}
    )
    assert first.key == again.key == "ubi:ubi_events:abc"
    own = ubi_event(FeedbackEvent(search_id="s1", action="click", object_id="t", position=1))
    assert FeedbackEvent.model_validate(own).key == own["event_attributes"]["event_id"]


def test_a_ubi_event_without_a_query_id_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="search_id"):
        FeedbackEvent.model_validate({"action_name": "click", "timestamp": "2026-11-30T10:00Z"})


def test_the_schema_refuses_what_ltrr_os_wrote_before() -> None:
    """The restated schema has teeth: no position, an id over 100 characters, no zone."""
    document = ubi_event(FeedbackEvent(search_id="s1", action="click", object_id="t"))
    del document["event_attributes"]["position"]
    document["query_id"] = "s" * 128
    assert len(_problems(EVENT, document)) == 2
    assert not STRICT_DATE_TIME.match(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat())
