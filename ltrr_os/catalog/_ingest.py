"""Bulk ingest of catalog entities: validate, embed, upsert; report every rejected row.

Documents are written with a scripted upsert that makes the entity exactly what the input says
(a field the input no longer has is gone) and keeps only what the learner wrote (the memory:
`q2e`, `memory_batches`, `memory_updated_at`), when it joined the catalog (`added_at`) and a
vector whose text did not change, so re-running the same ingest is idempotent and never forgets
what users taught the memory. An entity new to the catalog is created outright instead, to the
same effect at a fraction of the cost.
"""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from queue import Empty, Full, Queue
from typing import Any

from opensearchpy import OpenSearch, helpers
from pydantic import BaseModel, Field

from .._errors import LtrrError
from ..config import CatalogSchema, LtrrSettings
from ..embedding import Encoder
from ._entities import RowError, prepare_entity, unknown_fields
from ._readers import Rejection, SourceRow

ENCODE_BATCH = 1024
BULK_CHUNK = 256
BULK_STREAMS = 2
"""Bulk requests in flight at once. OpenSearch indexes a shard's part of one bulk request on one
write thread; a second stream keeps another busy (+37% side by side on two cores). Entities are
split between the streams by id, so an entity's repeats stay in order in one stream."""
_UPSERT_SCRIPT = """
Map fresh = new HashMap(params.doc);
for (def field : params.kept) {
  if (ctx._source.containsKey(field)) { fresh.put(field, ctx._source.get(field)); }
}
if (!fresh.containsKey('embedding') && ctx._source.containsKey('embedding')
    && params.doc.embedding_hash == ctx._source.embedding_hash) {
  fresh.put('embedding', ctx._source.embedding);
}
if (fresh.q2e != null && fresh.q2e_prior != null) {
  for (def key : fresh.q2e.keySet()) { fresh.q2e_prior.remove(key); }
}
ctx._source = fresh;
"""
LEARNED_FIELDS = ("q2e", "memory_batches", "memory_updated_at")
"""What the learner wrote into an entity: kept when ingest replaces its catalog fields."""
KEPT_FIELDS = (*LEARNED_FIELDS, "added_at")
"""Kept as well: when the entity first joined the catalog (what the fresh strategy reads)."""


class IngestReport(BaseModel):
    """What an ingest did; `rejected` lists every row that was not ingested and why."""

    read: int = 0
    indexed: int = 0
    by_entity_type: dict[str, int] = Field(default_factory=dict)
    rejected: list[Rejection] = Field(default_factory=list)
    ignored_fields: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0
    encoded: int = 0
    reused: int = Field(default=0, description="vectors kept because the text did not change")

    @property
    def entities_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0

    @property
    def sentences_per_second(self) -> float:
        return self.encoded / self.encode_seconds if self.encode_seconds else 0.0


ProgressCallback = Callable[[int], None]
_Batch = list[tuple[dict[str, Any], SourceRow]]


class _Stream:
    """One of the bulk streams: the actions routed to it (None ends it) and the upserts that its
    refused creates need, sent before its next action."""

    def __init__(self) -> None:
        self.inbox: Queue[dict[str, Any] | None] = Queue(maxsize=2 * BULK_CHUNK)
        self.retries: deque[dict[str, Any]] = deque()
        self.abandoned = threading.Event()

    def actions(self) -> Iterator[dict[str, Any]]:
        while True:
            while self.retries:
                yield self.retries.popleft()
            try:
                action = self.inbox.get(timeout=0.2)
            except Empty:
                if self.abandoned.is_set():
                    return
                continue
            if action is None:
                return
            yield action

    def put(self, action: dict[str, Any] | None, senders: list[Future[None]]) -> None:
        """Queue an action, unless a stream has stopped (its error is raised here)."""
        while True:
            try:
                self.inbox.put(action, timeout=0.5)
                return
            except Full:
                for sender in senders:
                    if sender.done():
                        sender.result()
                        raise LtrrError("a bulk stream stopped before the ingest ended") from None


def _create(alias: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"_op_type": "create", "_index": alias, "_id": doc["id"], "_source": doc}


def _upsert(alias: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The entity made exactly what the input says, keeping what `KEPT_FIELDS` name."""
    return {
        "_op_type": "update",
        "_index": alias,
        "_id": doc["id"],
        "retry_on_conflict": 3,  # the learner may be writing the entity's memory meanwhile
        "scripted_upsert": True,
        "script": {
            "source": _UPSERT_SCRIPT,
            "lang": "painless",
            "params": {"doc": doc, "kept": list(KEPT_FIELDS)},
        },
        "upsert": {},
    }


def _batches(
    rows: Iterable[SourceRow | Rejection],
    schema: CatalogSchema,
    report: IngestReport,
    ingested_at: str,
    added_at: str,
) -> Iterator[_Batch]:
    batch: _Batch = []
    ignored: set[str] = set()
    for row in rows:
        report.read += 1
        if isinstance(row, Rejection):
            report.rejected.append(row)
            continue
        ignored |= unknown_fields(schema, set(row.values))
        try:
            doc = prepare_entity(schema, row.values, row.origin)
        except RowError as exc:
            report.rejected.append(Rejection(file=row.file, line=row.line, reason=str(exc)))
            continue
        doc["ingested_at"] = ingested_at
        doc["added_at"] = added_at
        batch.append((doc, row))
        if len(batch) >= ENCODE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
    report.ignored_fields = sorted(ignored)


def _embedding_hash(encoder: Encoder, text: str) -> str:
    return hashlib.sha1(f"{encoder.model_id}\x1f{text}".encode()).hexdigest()[:20]


def _embed(
    batch: _Batch,
    schema: CatalogSchema,
    encoder: Encoder,
    report: IngestReport,
    stored: dict[str, str],
) -> None:
    """Give each entity its vector, encoding only texts that changed since the last ingest: an
    entity whose stored hash matches keeps its vector (the upsert leaves the field alone)."""
    pending = [doc for doc, _ in batch if "embedding" not in doc]
    if not pending:
        return
    texts = [schema.embedding_text(doc) or doc["id"] for doc in pending]
    todo: list[tuple[dict[str, Any], str]] = []
    for doc, text in zip(pending, texts, strict=True):
        doc["embedding_hash"] = _embedding_hash(encoder, text)
        if stored.get(doc["id"]) == doc["embedding_hash"]:
            report.reused += 1
        else:
            todo.append((doc, text))
    unique = list(dict.fromkeys(text for _, text in todo))
    if not unique:
        return
    started = time.perf_counter()
    vectors = encoder.encode(unique)
    report.encode_seconds += time.perf_counter() - started
    report.encoded += len(unique)
    by_text = dict(zip(unique, vectors, strict=True))
    for doc, text in todo:
        doc["embedding"] = by_text[text]


def ingest_rows(
    client: OpenSearch,
    settings: LtrrSettings,
    schema: CatalogSchema,
    rows: Iterable[SourceRow | Rejection],
    encoder: Encoder,
    on_progress: ProgressCallback | None = None,
    added_at: datetime | None = None,
) -> IngestReport:
    """Validate, embed and upsert rows into the catalog alias; never stops at a bad row. New
    entities are stamped `added_at` (now unless given: a simulation adds them in its own
    time); entities already in the catalog keep theirs."""
    if encoder.dimension != schema.embedding.dimension:
        raise LtrrError(
            f"encoder {encoder.model_id} makes {encoder.dimension}-dim vectors but schema "
            f"{schema.name!r} expects {schema.embedding.dimension}"
        )
    alias = settings.index_name("catalog")
    report = IngestReport()
    started = time.perf_counter()
    ingested_at = datetime.now(UTC).isoformat()
    added = (added_at or datetime.now(UTC)).isoformat()

    def stored_hashes(ids: list[str]) -> dict[str, str]:
        """The embedding hash of each of these entities already in the catalog ('' if none)."""
        found = client.mget(index=alias, body={"ids": ids}, _source=["embedding_hash"])["docs"]
        return {d["_id"]: d["_source"].get("embedding_hash", "") for d in found if d.get("found")}

    def prepared(batch: _Batch) -> set[str]:
        stored = stored_hashes([doc["id"] for doc, _ in batch])
        _embed(batch, schema, encoder, report, stored)
        return set(stored)

    # Bulk answers come back by id; a list per id keeps duplicate ids in one run apart.
    origins: dict[str, list[tuple[SourceRow, dict[str, Any]]]] = {}
    lock = threading.Lock()  # origins and the report, shared by the streams

    def embedded() -> Iterator[tuple[_Batch, set[str]]]:
        # The next batch is encoded while the current one is sent: the encoder and OpenSearch
        # indexing then share the machine instead of waiting on each other.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[set[str]] | None = None
            previous: _Batch = []
            for batch in _batches(rows, schema, report, ingested_at, added):
                future = pool.submit(prepared, batch)
                if pending is not None:
                    yield previous, pending.result()
                pending, previous = future, batch
            if pending is not None:
                yield previous, pending.result()

    def answered(stream: _Stream, ok: bool, op: str, result: dict[str, Any]) -> None:
        entity = str(result.get("_id"))
        with lock:
            pending = origins.get(entity)
            if not pending:
                return
            if op == "create" and result.get("status") == 409:
                stream.retries.append(_upsert(alias, pending[0][1]))
                return
            row, doc = pending.pop(0)
            if not pending:
                del origins[entity]
            if ok:
                report.indexed += 1
                kind = doc["entity_type"]
                report.by_entity_type[kind] = report.by_entity_type.get(kind, 0) + 1
            else:
                error = result.get("error", {})
                reason = error.get("reason", error) if isinstance(error, dict) else error
                report.rejected.append(
                    Rejection(
                        file=row.file, line=row.line, reason=f"OpenSearch refused it: {reason}"
                    )
                )
            if on_progress is not None:
                on_progress(report.read)

    def send(stream: _Stream, sent: Iterable[dict[str, Any]]) -> None:
        for ok, item in helpers.streaming_bulk(
            client,
            sent,
            chunk_size=BULK_CHUNK,
            max_chunk_bytes=10 * 1024 * 1024,
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=3,
            initial_backoff=1,
            request_timeout=120,
            require_alias=True,
        ):
            [(op, result)] = item.items()
            answered(stream, ok, op, result)

    def run(stream: _Stream) -> None:
        send(stream, stream.actions())
        while stream.retries:  # refused creates answered after the stream's last action
            send(stream, [stream.retries.popleft() for _ in range(len(stream.retries))])

    streams = [_Stream() for _ in range(BULK_STREAMS)]
    with ThreadPoolExecutor(max_workers=BULK_STREAMS) as senders:
        running = [senders.submit(run, stream) for stream in streams]
        try:
            for batch, existing in embedded():
                for doc, row in batch:
                    with lock:
                        # An entity new to the catalog is created outright, which costs
                        # OpenSearch a fraction of the scripted upsert; one created meanwhile
                        # (by another ingest, or earlier in this one) refuses the create and is
                        # sent again as an upsert.
                        new = doc["id"] not in existing and doc["id"] not in origins
                        origins.setdefault(doc["id"], []).append((row, doc))
                    action = _create(alias, doc) if new else _upsert(alias, doc)
                    streams[zlib.crc32(doc["id"].encode()) % BULK_STREAMS].put(action, running)
            for stream in streams:
                stream.put(None, running)
        except BaseException:
            for stream in streams:
                stream.abandoned.set()
            raise
        for sender in running:
            sender.result()
    report.rejected.sort(key=lambda rejection: (rejection.file, rejection.line))
    if origins:
        raise LtrrError(f"{len(origins)} entities got no answer from OpenSearch")
    client.indices.refresh(index=alias)
    report.seconds = time.perf_counter() - started
    return report
