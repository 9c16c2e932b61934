"""Reading the UBI logs in the order they reached the cluster.

Every ltrr-os UBI document carries `ingested_at`, stamped by the `<prefix>ubi-ingest` pipeline
when it first arrived. The learner reads windows of that time: everything that arrived after
its cursor and up to a watermark a little behind the cluster's clock (`lag_s`: a document
stamped just before the watermark may still be on its way to a shard), after a refresh, so
a window, once read, is complete and reads the same again (a restarted learner re-reads the
window it was applying). Pages follow `search_after` on (arrival, id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError
from pydantic import ValidationError

from ..config import LtrrSettings
from ..feedback import SearchRecord
from ..opensearch import opensearch_error
from ._rules import LoggedEvent, LoggedSearch

PAGE = 5000
IDS_PER_REQUEST = 1000
SEARCH_ORDER = [{"ingested_at": "asc"}, {"query_id": "asc"}]
EVENT_ORDER = [{"ingested_at": "asc"}, {"event_attributes.event_id": "asc"}]
EVENT_FIELDS = [
    "query_id",
    "action_name",
    "timestamp",
    "user_id",
    "session_id",
    "client_id",
    "event_attributes.event_id",
    "event_attributes.object.object_id",
]
JOIN_FIELDS = [
    "ltrr.search_id",
    "ltrr.text",
    "ltrr.user_id",
    "ltrr.session_id",
    "ltrr.results",
    "ltrr.candidates",
    "ltrr.attributes",
]


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_millis(value: int | float) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _arrival_window(after_ms: int, until_ms: int) -> dict[str, Any]:
    return {"range": {"ingested_at": {"gt": after_ms, "lte": until_ms, "format": "epoch_millis"}}}


def _actions(actions: Sequence[str] | None) -> list[dict[str, Any]]:
    return [] if actions is None else [{"terms": {"action_name": list(actions)}}]


def _timestamp(value: Any, fallback: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return fallback
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event(hit: dict[str, Any]) -> LoggedEvent | None:
    source = hit["_source"]
    attributes = source.get("event_attributes") or {}
    key = attributes.get("event_id") or hit["_id"]
    search_id = source.get("query_id")
    if not search_id:
        return None
    arrived = from_millis(hit["sort"][0])
    object_id = (attributes.get("object") or {}).get("object_id")
    return LoggedEvent(
        key=str(key),
        search_id=str(search_id),
        action=str(source.get("action_name") or ""),
        object_id=str(object_id) if object_id else None,
        timestamp=_timestamp(source.get("timestamp"), arrived),
        ingested_at=arrived,
        user_id=source.get("user_id") or source.get("client_id"),
        session_id=source.get("session_id"),
    )


class UbiLog:
    """The deployment's UBI indices, read in arrival order."""

    def __init__(self, client: OpenSearch, settings: LtrrSettings) -> None:
        self._client = client
        self._settings = settings
        self.queries = settings.index_name("ubi_queries")
        self.events_index = settings.index_name("ubi_events")

    @property
    def both(self) -> str:
        return f"{self.queries},{self.events_index}"

    def first_arrival(self, index: str, after_ms: int, until_ms: int) -> int | None:
        """The arrival time of the first document in (after, until], if any."""
        body = {
            "size": 0,
            "query": _arrival_window(after_ms, until_ms),
            "aggs": {"first": {"min": {"field": "ingested_at"}}},
        }
        try:
            found = self._client.search(index=index, body=body)
        except TransportError as exc:
            raise opensearch_error(exc, self._settings.opensearch_url) from None
        value = found["aggregations"]["first"].get("value")
        return None if value is None else int(value)

    def refresh(self) -> None:
        """Make every acknowledged write visible before a window is read."""
        try:
            self._client.indices.refresh(index=f"{self.queries},{self.events_index}")
        except TransportError as exc:
            raise opensearch_error(exc, self._settings.opensearch_url) from None

    def _pages(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[dict[str, str]],
        source: Sequence[str] | Mapping[str, Sequence[str]],
    ) -> Iterator[dict[str, Any]]:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": PAGE,
                "query": query,
                "sort": sort,
                "_source": source,
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            try:
                hits = self._client.search(index=index, body=body)["hits"]["hits"]
            except TransportError as exc:
                raise opensearch_error(exc, self._settings.opensearch_url) from None
            yield from hits
            if len(hits) < PAGE:
                return
            after = hits[-1]["sort"]

    def events(
        self, after_ms: int, until_ms: int, actions: Sequence[str] | None = None
    ) -> Iterator[LoggedEvent]:
        """Events that arrived in (after, until], in arrival order (only these actions)."""
        query = {"bool": {"filter": [_arrival_window(after_ms, until_ms), *_actions(actions)]}}
        for hit in self._pages(self.events_index, query, EVENT_ORDER, EVENT_FIELDS):
            if (event := _event(hit)) is not None:
                yield event

    def events_of(
        self, search_ids: Iterable[str], until_ms: int, actions: Sequence[str] | None = None
    ) -> dict[str, list[LoggedEvent]]:
        """The events of these searches that arrived up to `until`, per search, in order (only
        these actions)."""
        found: dict[str, list[LoggedEvent]] = defaultdict(list)
        ids = sorted(set(search_ids))
        for start in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[start : start + IDS_PER_REQUEST]
            query = {
                "bool": {
                    "filter": [
                        {"terms": {"query_id": chunk}},
                        _arrival_window(-1, until_ms),
                        *_actions(actions),
                    ]
                }
            }
            for hit in self._pages(self.events_index, query, EVENT_ORDER, EVENT_FIELDS):
                if (event := _event(hit)) is not None:
                    found[event.search_id].append(event)
        return found

    def searches(
        self,
        after_ms: int,
        until_ms: int,
        fields: Sequence[str] | Mapping[str, Sequence[str]] = ("ltrr",),
    ) -> Iterator[tuple[datetime, dict[str, Any]]]:
        """(arrival, the logged record) of searches that arrived in (after, until], in order;
        documents without an ltrr-os record are skipped."""
        query = {"bool": {"filter": [_arrival_window(after_ms, until_ms)]}}
        for hit in self._pages(self.queries, query, SEARCH_ORDER, fields):
            record = hit["_source"].get("ltrr")
            if isinstance(record, dict):
                yield from_millis(hit["sort"][0]), record

    def joined_searches(self, after_ms: int, until_ms: int) -> Iterator[LoggedSearch]:
        for arrived, record in self.searches(after_ms, until_ms, JOIN_FIELDS):
            if (search := _logged_search(record, arrived)) is not None:
                yield search

    def searches_by_id(self, search_ids: Iterable[str]) -> dict[str, LoggedSearch]:
        """The named searches that are in the log (whenever they arrived)."""
        found: dict[str, LoggedSearch] = {}
        ids = sorted(set(search_ids))
        for start in range(0, len(ids), IDS_PER_REQUEST):
            query = {"ids": {"values": ids[start : start + IDS_PER_REQUEST]}}
            for hit in self._pages(self.queries, query, SEARCH_ORDER, JOIN_FIELDS):
                record = hit["_source"].get("ltrr")
                if isinstance(record, dict):
                    search = _logged_search(record, from_millis(hit["sort"][0]))
                    if search is not None:
                        found[search.search_id] = search
        return found


def _logged_search(record: dict[str, Any], arrived: datetime) -> LoggedSearch | None:
    try:
        candidates = record.get("candidates") or {}
        return LoggedSearch(
            search_id=str(record["search_id"]),
            text=str(record["text"]),
            ingested_at=arrived,
            user_id=record.get("user_id"),
            session_id=record.get("session_id"),
            shown=frozenset(str(i) for i in record.get("results") or []),
            retrieved=frozenset(
                str(i) for listed in candidates.values() for i in (listed or {}).get("ids") or []
            ),
            attributes=record.get("attributes") or {},
        )
    except (KeyError, TypeError, AttributeError):
        return None


def search_record(record: dict[str, Any]) -> SearchRecord | None:
    """A full logged record, or None when it is not one this version can read."""
    try:
        return SearchRecord.model_validate(record)
    except ValidationError:
        return None
