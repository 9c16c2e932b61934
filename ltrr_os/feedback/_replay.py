"""`ltrr replay`: rebuild the policy, the Q2E memory and user profiles from the UBI log alone."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from opensearchpy import OpenSearch, helpers
from pydantic import BaseModel, ValidationError

from ..config import CatalogSchema, LtrrSettings
from ..memory import MemoryUpdate, remember, reset_memory
from ..policy import ENGAGEMENT_WEIGHTS, Policy
from ._events import APPLICATION, SearchRecord
from ._outcomes import outcome_of
from ._profiles import UserProfiles

MEMORY_BATCH = 500


class ReplayReport(BaseModel):
    searches: int = 0
    events: int = 0
    engagements: int = 0
    learned: int = 0
    memory_updates: int = 0
    entities_reset: int = 0
    skipped_records: int = 0


def _scan(client: OpenSearch, index: str, source: list[str] | bool) -> Iterator[dict[str, Any]]:
    query = {"query": {"term": {"application": APPLICATION}}, "_source": source}
    yield from helpers.scan(client, index=index, query=query, size=1000, preserve_order=False)


def replay(
    client: OpenSearch,
    settings: LtrrSettings,
    schema: CatalogSchema,
    policy: Policy,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[ReplayReport, UserProfiles]:
    """Learn everything again, in the order the searches happened: each search with the
    engagements it received (however late they came), the memory from every engagement at the
    time it happened. The fresh `policy` is trained in place."""
    report = ReplayReport()
    client.indices.refresh(index=settings.index_name("ubi_events"))
    client.indices.refresh(index=settings.index_name("ubi_queries"))
    engagements: dict[str, list[tuple[str, str, str | None, float]]] = defaultdict(list)
    for hit in _scan(client, settings.index_name("ubi_events"), True):
        event = hit["_source"]
        report.events += 1
        weight = ENGAGEMENT_WEIGHTS.get(str(event.get("action_name")), 0.0)
        object_id = (event.get("event_attributes", {}).get("object") or {}).get("object_id")
        if weight > 0 and object_id:
            engagements[str(event["query_id"])].append(
                (str(event["timestamp"]), str(object_id), event.get("user_id"), weight)
            )
    records: list[SearchRecord] = []
    for hit in _scan(client, settings.index_name("ubi_queries"), ["ltrr"]):
        try:
            records.append(SearchRecord.model_validate(hit["_source"]["ltrr"]))
        except (KeyError, ValidationError):
            report.skipped_records += 1
    records.sort(key=lambda r: (r.timestamp, r.search_id))
    report.entities_reset = reset_memory(client, settings, schema)
    profiles = UserProfiles()
    updates: list[MemoryUpdate] = []
    for done, record in enumerate(records, start=1):
        report.searches += 1
        best: dict[str, float] = {}
        for timestamp, object_id, user_id, weight in sorted(engagements.get(record.search_id, [])):
            report.engagements += 1
            best[object_id] = max(weight, best.get(object_id, 0.0))
            updates.append(
                MemoryUpdate.model_validate(
                    {
                        "entity_id": object_id,
                        "query": record.text,
                        "weight": weight,
                        "timestamp": timestamp,
                    }
                )
            )
            user = user_id or record.user_id
            if user is not None:
                profiles.engage(user, record.attributes.get(object_id, {}))
        outcome = outcome_of(record.decision, record.candidates, best)
        policy.learn(record.context, record.decision, outcome)
        report.learned += 1
        if len(updates) >= MEMORY_BATCH:
            report.memory_updates += remember(client, settings, updates)[0]
            updates = []
        if on_progress is not None:
            on_progress(done)
    report.memory_updates += remember(client, settings, updates)[0]
    client.indices.refresh(index=settings.index_name("catalog"))
    return report, profiles
