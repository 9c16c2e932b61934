"""The Q2E memory: per entity, how much users engaged with it for each query.

Observed scores live in the catalog's `q2e` rank_features field, keyed by the normalised query.
Each engagement adds its weight to a count that decays exponentially (half-life 30 days by
default), so stale tastes fade; the decay is applied lazily, to all of an entity's keys, whenever
that entity is updated. An observed score replaces the predicted (cold-start) prior for the same
query, so the memory strategy serves evidence instead of guesses as soon as it exists. Because
the key comes from the query, not from the strategy that found the entity, a query never seen
before gains memory entries as soon as any other strategy leads to engagement.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from opensearchpy import OpenSearch, helpers
from pydantic import BaseModel, Field

from .._text import memory_key
from ..catalog import prepare_entity
from ..config import CatalogSchema, LtrrSettings

log = logging.getLogger(__name__)

HALF_LIFE_DAYS = 30.0
MIN_SCORE = 1e-3

_UPDATE_SCRIPT = """
if (ctx._source.q2e == null) { ctx._source.q2e = new HashMap(); }
long now = ((Number) params.now).longValue();
long last = ctx._source.memory_updated_at == null ? now
    : ((Number) ctx._source.memory_updated_at).longValue();
double factor = Math.pow(0.5, Math.max(0L, now - last) / params.half_life_ms);
List stale = new ArrayList();
for (def entry : ctx._source.q2e.entrySet()) {
  double decayed = entry.getValue() * factor;
  if (decayed < params.min_score) { stale.add(entry.getKey()); } else { entry.setValue(decayed); }
}
for (def key : stale) { ctx._source.q2e.remove(key); }
def current = ctx._source.q2e.get(params.key);
ctx._source.q2e.put(params.key, (current == null ? 0.0 : current) + params.weight);
if (ctx._source.q2e_prior != null) { ctx._source.q2e_prior.remove(params.key); }
ctx._source.memory_updated_at = last > now ? last : now;
"""


OBSERVED = {"exists": {"field": "memory_updated_at"}}
"""Entities with observed memory: `remember` stamps every entity it updates."""


def observed_entities(client: OpenSearch, settings: LtrrSettings) -> int:
    """How many entities hold memory learned from engagement."""
    index = settings.index_name("catalog")
    return int(client.count(index=index, body={"query": OBSERVED})["count"])


class MemoryUpdate(BaseModel):
    """One engagement to remember: this entity was wanted for this query."""

    entity_id: str
    query: str
    weight: float = Field(gt=0, le=1)
    timestamp: datetime

    @property
    def key(self) -> str:
        return memory_key(self.query)


def _actions(
    settings: LtrrSettings, updates: Iterable[MemoryUpdate], half_life_days: float
) -> Iterator[dict[str, Any]]:
    index = settings.index_name("catalog")
    for update in updates:
        if not update.key:
            continue
        yield {
            "_op_type": "update",
            "_index": index,
            "_id": update.entity_id,
            "retry_on_conflict": 5,
            "script": {
                "lang": "painless",
                "source": _UPDATE_SCRIPT,
                "params": {
                    "key": update.key,
                    "weight": update.weight,
                    "now": int(update.timestamp.timestamp() * 1000),
                    "half_life_ms": half_life_days * 86_400_000.0,
                    "min_score": MIN_SCORE,
                },
            },
        }


def remember(
    client: OpenSearch,
    settings: LtrrSettings,
    updates: Iterable[MemoryUpdate],
    half_life_days: float = HALF_LIFE_DAYS,
) -> tuple[int, list[str]]:
    """Apply engagements to the memory; returns (applied, errors). An entity that no longer
    exists is an error, not an exception: the event itself is safe in the UBI log, and
    `ltrr replay` rebuilds the memory from it."""
    applied, errors = 0, []
    for ok, item in helpers.streaming_bulk(
        client,
        _actions(settings, updates, half_life_days),
        raise_on_error=False,
        raise_on_exception=False,
        max_retries=2,
        require_alias=True,
    ):
        if ok:
            applied += 1
        else:
            result = item.get("update", {})
            reason = result.get("error", {})
            reason = reason.get("reason", reason) if isinstance(reason, dict) else reason
            errors.append(f"{result.get('_id')}: {reason}")
    if errors:
        log.warning("%d memory update(s) failed; first: %s", len(errors), errors[0])
    return applied, errors


def reset_memory(client: OpenSearch, settings: LtrrSettings, schema: CatalogSchema) -> int:
    """Forget every observed score and restore the predicted priors from the entities' fields
    (what ingest would compute), before a replay rebuilds the memory from the log. Only
    entities with observed memory are touched: the others still hold their priors."""
    index = settings.index_name("catalog")
    fields = ["id", "entity_type", "popularity_value", *schema.fields]
    query = {"_source": fields, "query": OBSERVED}

    def actions() -> Iterator[dict[str, Any]]:
        for hit in helpers.scan(client, index=index, query=query, size=1000):
            values = {**hit["_source"], "popularity": hit["_source"].get("popularity_value")}
            prior = prepare_entity(schema, values, "replay").get("q2e_prior", {})
            yield {
                "_op_type": "update",
                "_index": index,
                "_id": hit["_id"],
                "script": {
                    "lang": "painless",
                    "source": "ctx._source.q2e = new HashMap(); "
                    "ctx._source.remove('memory_updated_at'); ctx._source.q2e_prior = params.p",
                    "params": {"p": prior},
                },
            }

    reset = 0
    for ok, _ in helpers.streaming_bulk(
        client, actions(), raise_on_error=False, chunk_size=500, require_alias=True
    ):
        reset += ok
    client.indices.refresh(index=index)
    return reset
