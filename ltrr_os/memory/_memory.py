"""The Q2E memory: per entity, how much users engaged with it for each query.

Observed scores live in the catalog's `q2e` rank_features field, keyed by the normalised query.
Scores decay exponentially (half-life 30 days) by **forward decay**: an engagement of weight w at
time t is stored as w * 2^((t - EPOCH) / half-life), and a score read at time `now` is worth the
stored value divided by 2^((now - EPOCH) / half-life). The divisor is the same for every entity,
so stored scores order entities exactly as their decayed values do, at any time, without
rewriting anything: an entity engaged with long ago ranks below one engaged with recently unless
its past engagement outweighs the decay between them. The memory strategy reads them through a
saturation whose pivot is that divisor (`decay_scale(now)`), so a decayed score of 1 is half of
its reach whatever the date. Ten years of half-lives fit in the float32 a rank feature keeps.

An observed score replaces the predicted (cold-start) prior for the same query, so the memory
strategy serves evidence instead of guesses as soon as it exists. Because the key comes from the
query, not from the strategy that found the entity, a query never seen before gains memory
entries as soon as any other strategy leads to engagement.

Only the learner writes the memory, in numbered batches: an entity remembers the last batch
applied to it (`memory_batches`, per namespace) and ignores a batch it has seen, so a batch
applied again after a crash adds nothing twice. A namespace keeps a memory apart from the
deployment's own: a simulation gives each policy one, and removes them when it ends.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch, helpers
from pydantic import BaseModel, Field

from .._errors import LtrrError
from .._text import memory_key
from ..catalog import prepare_entity
from ..config import CatalogSchema, LtrrSettings

log = logging.getLogger(__name__)

HALF_LIFE_DAYS = 30.0
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""The reference time of forward decay (fixed: stored scores are relative to it)."""
MIN_SCORE = 1e-3
"""A decayed score below this is forgotten when its entity is next updated."""
MAX_HALF_LIVES = 120.0
"""Stored scores stay far below float32's limit (2^128) up to this many half-lives past EPOCH."""

_UPDATE_SCRIPT = """
if (ctx._source.memory_batches == null) { ctx._source.memory_batches = new HashMap(); }
def last = ctx._source.memory_batches.get(params.namespace);
if (last != null && ((Number) last).longValue() >= params.batch) {
  ctx.op = 'noop';
  return;
}
if (ctx._source.q2e == null) { ctx._source.q2e = new HashMap(); }
for (def entry : params.deltas.entrySet()) {
  def current = ctx._source.q2e.get(entry.getKey());
  ctx._source.q2e.put(entry.getKey(), (current == null ? 0.0 : current) + entry.getValue());
  if (ctx._source.q2e_prior != null) { ctx._source.q2e_prior.remove(entry.getKey()); }
}
List stale = new ArrayList();
for (def entry : ctx._source.q2e.entrySet()) {
  if (entry.getValue() < params.floor) { stale.add(entry.getKey()); }
}
for (def key : stale) { ctx._source.q2e.remove(key); }
ctx._source.memory_batches.put(params.namespace, params.batch);
ctx._source.memory_updated_at = params.now;
"""

_FORGET_SCRIPT = """
if (ctx._source.q2e != null) {
  List gone = new ArrayList();
  for (def key : ctx._source.q2e.keySet()) {
    for (def namespace : params.namespaces) {
      if (key.startsWith(namespace + '~')) { gone.add(key); }
    }
  }
  for (def key : gone) { ctx._source.q2e.remove(key); }
}
if (ctx._source.memory_batches != null) {
  for (def namespace : params.namespaces) { ctx._source.memory_batches.remove(namespace); }
  if (ctx._source.memory_batches.isEmpty()) {
    ctx._source.remove('memory_batches');
    ctx._source.remove('memory_updated_at');
  }
}
"""


def decay_scale(moment: datetime, half_life_days: float = HALF_LIFE_DAYS) -> float:
    """2^((moment - EPOCH) / half-life): what a weight engaged at `moment` is multiplied by when
    stored, and what a stored score is divided by to read its value at `moment`."""
    half_lives = (moment - EPOCH).total_seconds() / (half_life_days * 86_400.0)
    if half_lives > MAX_HALF_LIVES:
        raise LtrrError(
            f"{moment:%Y-%m-%d} is more than {MAX_HALF_LIVES:.0f} half-lives after the memory's "
            "epoch; the stored scores would overflow"
        )
    return math.pow(2.0, half_lives)


OBSERVED = {"exists": {"field": "memory_updated_at"}}
"""Entities with observed memory: the learner stamps every entity it updates."""


def observed_entities(client: OpenSearch, settings: LtrrSettings) -> int:
    """How many entities hold memory learned from engagement."""
    index = settings.index_name("catalog")
    return int(client.count(index=index, body={"query": OBSERVED})["count"])


def namespaced(key: str, namespace: str) -> str:
    """A memory key within a namespace ('~' never occurs in a normalised query)."""
    return f"{namespace}~{key}" if namespace else key


class MemoryUpdate(BaseModel):
    """One engagement to remember: this entity was wanted for this query, with this weight."""

    entity_id: str
    query: str
    weight: float = Field(gt=0, le=1)
    timestamp: datetime
    namespace: str = Field(default="", pattern=r"^[a-z0-9_.-]{0,40}$")

    @property
    def key(self) -> str:
        """The rank feature it adds to: the normalised query, in its namespace ('' when the
        query has no memory key)."""
        key = memory_key(self.query)
        return namespaced(key, self.namespace) if key else ""


@dataclass
class MemoryBatch:
    """The stored-score increments of one batch: entity -> memory key -> increment."""

    deltas: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, update: MemoryUpdate, half_life_days: float = HALF_LIFE_DAYS) -> bool:
        """Add one engagement; False (and nothing added) when its query has no memory key."""
        key = update.key
        if not key:
            return False
        entity = self.deltas.setdefault(update.entity_id, {})
        entity[key] = entity.get(key, 0.0) + update.weight * decay_scale(
            update.timestamp, half_life_days
        )
        return True

    def __len__(self) -> int:
        return len(self.deltas)


@dataclass(frozen=True)
class MemoryWrite:
    """What applying a batch did: entities updated (or already holding the batch), entities
    missing from the catalog (their engagement stays in the log), and entities whose update
    failed and must be tried again."""

    applied: int
    missing: list[str]
    failed: list[str]


def _actions(
    settings: LtrrSettings,
    batch: MemoryBatch,
    number: int,
    now: datetime,
    half_life_days: float,
    namespace: str,
) -> Iterator[dict[str, Any]]:
    index = settings.index_name("catalog")
    floor = MIN_SCORE * decay_scale(now, half_life_days)
    stamp = int(now.timestamp() * 1000)
    for entity_id, deltas in batch.deltas.items():
        yield {
            "_op_type": "update",
            "_index": index,
            "_id": entity_id,
            "retry_on_conflict": 5,
            "script": {
                "lang": "painless",
                "source": _UPDATE_SCRIPT,
                "params": {
                    "deltas": deltas,
                    "batch": number,
                    "now": stamp,
                    "floor": floor,
                    "namespace": namespace,
                },
            },
        }


def apply_memory(
    client: OpenSearch,
    settings: LtrrSettings,
    batch: MemoryBatch,
    number: int,
    now: datetime,
    half_life_days: float = HALF_LIFE_DAYS,
    namespace: str = "",
) -> MemoryWrite:
    """Apply one numbered batch (of keys of `namespace`), one scripted update per entity.
    Applying the same batch again changes nothing (each entity keeps the number of the last
    batch of each namespace it took)."""
    applied, missing, failed = 0, [], []
    reasons: list[str] = []
    for ok, item in helpers.streaming_bulk(
        client,
        _actions(settings, batch, number, now, half_life_days, namespace),
        chunk_size=1000,
        raise_on_error=False,
        raise_on_exception=False,
        max_retries=3,
        require_alias=True,
    ):
        result = item.get("update", {})
        if ok:
            applied += 1
        elif result.get("status") == 404:
            missing.append(str(result.get("_id")))
        else:
            failed.append(str(result.get("_id")))
            reason = result.get("error", {})
            reasons.append(
                str(reason.get("reason", reason) if isinstance(reason, Mapping) else reason)
            )
    if failed:
        log.warning(
            "%d memory updates failed (they will be applied again); first, %s: %s",
            len(failed),
            failed[0],
            reasons[0],
        )
    return MemoryWrite(applied, missing, failed)


def forget_namespaces(client: OpenSearch, settings: LtrrSettings, namespaces: list[str]) -> int:
    """Remove every score of these namespaces (what a simulation learned); returns how many
    entities held some. The deployment's own memory is untouched."""
    if not namespaces:
        return 0
    index = settings.index_name("catalog")
    client.indices.refresh(index=index)
    result = client.update_by_query(
        index=index,
        body={
            "query": OBSERVED,
            "script": {
                "lang": "painless",
                "source": _FORGET_SCRIPT,
                "params": {"namespaces": namespaces},
            },
        },
        conflicts="proceed",
        refresh=True,
        request_timeout=3600,
    )
    return int(result.get("updated", 0))


def reset_memory(client: OpenSearch, settings: LtrrSettings, schema: CatalogSchema) -> int:
    """Forget every observed score and restore the predicted priors from the entities' fields
    (what ingest would compute), before the memory is learned again from the log. Only
    entities with observed memory are touched: the others still hold their priors."""
    index = settings.index_name("catalog")
    fields = ["id", "entity_type", "popularity_value", *schema.fields]
    query = {"_source": fields, "query": OBSERVED}
    client.indices.refresh(index=index)  # the scan sees only searchable documents

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
                    "ctx._source.remove('memory_updated_at'); "
                    "ctx._source.remove('memory_batches'); ctx._source.q2e_prior = params.p",
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
