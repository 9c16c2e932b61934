"""The constraints of the UBI 1.3.0 JSON schemas (https://o19s.github.io/ubi/schema/1.3.0/,
`event.schema.json` and `query.request.schema.json`), restated here because nothing is
downloaded at test time: required fields, types, length limits, and the event's position as
either an ordinal or x/y coordinates."""

from __future__ import annotations

from typing import Any

_SHORT = {"type": "string", "maxLength": 100}
_ID_OR_NUMBER = {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "integer"}]}

EVENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["action_name", "timestamp"],
    "properties": {
        "application": _SHORT,
        "action_name": _SHORT,
        "query_id": _SHORT,
        "session_id": _SHORT,
        "client_id": _SHORT,
        "user_id": _SHORT,
        "timestamp": {"type": "string", "format": "date-time"},
        "message_type": _SHORT,
        "message": {"type": "string", "maxLength": 1024},
        "user_query": {"type": "string"},
        "event_attributes": {
            "type": "object",
            "required": ["position"],
            "properties": {
                "object": {
                    "type": "object",
                    "required": ["object_id"],
                    "properties": {
                        "object_id": _ID_OR_NUMBER,
                        "object_id_type": _SHORT,
                        "object_id_field": _SHORT,
                        "internal_id": _ID_OR_NUMBER,
                    },
                },
                "position": {
                    "type": "object",
                    "oneOf": [
                        {
                            "properties": {"ordinal": {"type": "integer"}},
                            "required": ["ordinal"],
                        },
                        {
                            "properties": {
                                "xy": {
                                    "type": "object",
                                    "properties": {
                                        "x": {"type": "number"},
                                        "y": {"type": "number"},
                                    },
                                    "required": ["x", "y"],
                                }
                            },
                            "required": ["xy"],
                        },
                    ],
                },
            },
        },
    },
}

QUERY: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["user_query"],
    "properties": {
        "application": _SHORT,
        "query_id": _SHORT,
        "client_id": _SHORT,
        "user_query": {"type": "string"},
        "query_attributes": {"type": "object"},
        "object_id_field": _SHORT,
        "timestamp": {"type": "string", "format": "date-time"},
        "query_response_id": {"type": "string"},
        "query_response_hit_ids": {"type": "array", "items": {"type": "string"}},
    },
}
