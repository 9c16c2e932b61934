"""UBI events other tools wrote (`ubi.js`, the UBI plugin's own `ubi_events` index), read as
feedback: their `query_id` names an ltrr-os search, their object a catalog id."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from opensearchpy import OpenSearch, helpers

from .._errors import LtrrError
from ._events import feedback_from_ubi, ubi_time


def foreign_events(
    client: OpenSearch, index: str, since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The index's events as `FeedbackEvent` fields, oldest first. Each keeps an id derived
    from its document id, so importing the same events again stores nothing twice."""
    query: dict[str, Any] = {"match_all": {}}
    if since is not None:
        query = {"range": {"timestamp": {"gte": ubi_time(since)}}}
    if not client.indices.exists(index=index):
        raise LtrrError(f"no index or alias {index} to read UBI events from")
    sort = [{"timestamp": {"order": "asc", "unmapped_type": "date"}}]
    for hit in helpers.scan(
        client, index=index, query={"query": query, "sort": sort}, preserve_order=True, size=1000
    ):
        yield feedback_from_ubi(hit["_source"], doc_id=f"{hit['_index']}:{hit['_id']}")
