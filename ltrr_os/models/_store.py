"""Model versions in OpenSearch: the one place serving processes load learned models from.

The `<prefix>models` index holds two kinds of documents:

- a version, `<kind>-<name>-v<N>`: the model's bytes (base64 in a `binary` field), their
  SHA-256, the feature schema it reads (rankers), its metrics, what it was trained on and by
  whom, its parent version, and its status: `candidate` (stored, not serving), `promoted`
  (served now or before), `rejected` (the promotion gate said no, and why);
- a live pointer, `live-<kind>-<name>`: the promoted version servers load, and the versions
  promoted before it, newest first (what `rollback` goes back to).

Version numbers are claimed with `create` (409 means another writer took it: try the next), so
two trainers never share a number. Moving the pointer is one document write, so servers see
the old version or the new one, never a mix. A local directory is only an export.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any, Literal

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, TransportError
from pydantic import BaseModel, Field, ValidationError

from .._errors import LtrrError
from ..config import LtrrSettings
from ..opensearch import opensearch_error

log = logging.getLogger(__name__)

ModelKind = Literal["policy", "ranker"]
Status = Literal["candidate", "promoted", "rejected"]
MODEL_KINDS: tuple[ModelKind, ...] = ("policy", "ranker")
POINTER_HISTORY = 20


def who() -> str:
    """What trained a model: host and process, for the record."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ModelVersion(BaseModel):
    """A stored version's record (without its bytes)."""

    kind: ModelKind
    name: str
    version: int = Field(ge=1)
    status: Status
    created_at: datetime
    sha256: str
    size_bytes: int
    feature_version: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    trained_on: dict[str, Any] = Field(default_factory=dict)
    trained_by: str = ""
    parent: int | None = None
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} v{self.version}"


class LivePointer(BaseModel):
    kind: ModelKind
    name: str
    version: int
    previous: list[int] = Field(default_factory=list, description="promoted before, newest first")
    updated_at: datetime
    reason: str = ""


def _version_id(kind: str, name: str, version: int) -> str:
    return f"{kind}-{name}-v{version}"


def _pointer_id(kind: str, name: str) -> str:
    return f"live-{kind}-{name}"


class ModelStore:
    """Versions, promotion, rollback and pruning of learned models in the models index."""

    def __init__(self, client: OpenSearch, settings: LtrrSettings) -> None:
        self._client = client
        self._settings = settings
        self.index = settings.index_name("models")

    def _call(self, what: str, **request: Any) -> Any:
        """A request; a missing document answers `found: false` (not logged as a failure)."""
        method = getattr(self._client, what)
        if what == "get":
            request["ignore"] = 404
        try:
            return method(**request)
        except ConflictError:
            raise
        except TransportError as exc:
            raise opensearch_error(exc, self._settings.opensearch_url) from None

    # -- writing --------------------------------------------------------------------------------

    def publish(
        self,
        kind: ModelKind,
        name: str,
        blob: bytes,
        *,
        status: Status = "candidate",
        metrics: dict[str, Any] | None = None,
        trained_on: dict[str, Any] | None = None,
        parent: int | None = None,
        reason: str = "",
        feature_version: str | None = None,
    ) -> ModelVersion:
        """Store a new version (the next free number) and, when `status` is `promoted`, make it
        live. Returns its record."""
        version = self._newest_number(kind, name) + 1
        while True:
            record = ModelVersion(
                kind=kind,
                name=name,
                version=version,
                status=status,
                created_at=datetime.now(UTC),
                sha256=hashlib.sha256(blob).hexdigest(),
                size_bytes=len(blob),
                feature_version=feature_version,
                metrics=metrics or {},
                trained_on=trained_on or {},
                trained_by=who(),
                parent=parent,
                reason=reason,
            )
            document = {
                "record": "version",
                **record.model_dump(mode="json"),
                "blob": base64.b64encode(blob).decode(),
            }
            try:
                self._call(
                    "create",
                    index=self.index,
                    id=_version_id(kind, name, version),
                    body=document,
                    refresh=True,
                )
            except ConflictError:
                version += 1
                continue
            break
        if status == "promoted":
            self._point(record, reason or "published as promoted")
        return record

    def promote(self, kind: ModelKind, name: str, version: int, reason: str) -> ModelVersion:
        """Make a stored version live (whatever its status: an operator may overrule the gate)."""
        record = self.get(kind, name, version)
        self._set_status(record, "promoted", reason)
        record = record.model_copy(update={"status": "promoted", "reason": reason})
        self._point(record, reason)
        return record

    def reject(self, kind: ModelKind, name: str, version: int, reason: str) -> None:
        """Record that the promotion gate refused a version, and why."""
        self._set_status(self.get(kind, name, version), "rejected", reason)

    def rollback(self, kind: ModelKind, name: str, reason: str = "rollback") -> ModelVersion:
        """Point back to the version promoted before the live one."""
        pointer = self.pointer(kind, name)
        if pointer is None:
            raise LtrrError(f"no live {kind} {name!r} to roll back")
        for version in pointer.previous:
            try:
                record = self.get(kind, name, version)
            except LtrrError:
                continue  # pruned
            self._write_pointer(
                LivePointer(
                    kind=kind,
                    name=name,
                    version=version,
                    previous=[v for v in pointer.previous if v != version],
                    updated_at=datetime.now(UTC),
                    reason=f"{reason} (from v{pointer.version})",
                )
            )
            return record
        raise LtrrError(f"{kind} {name!r} has no earlier promoted version to roll back to")

    def prune(self, kind: ModelKind, name: str, keep: int) -> int:
        """Delete all but the newest `keep` versions, never the live one nor the one before it."""
        pointer = self.pointer(kind, name)
        protected = set() if pointer is None else {pointer.version, *pointer.previous[:1]}
        numbers = sorted((v.version for v in self.versions(kind, name)), reverse=True)
        doomed = [n for n in numbers[keep:] if n not in protected]
        for number in doomed:
            self._client.delete(
                index=self.index, id=_version_id(kind, name, number), ignore=404, refresh=True
            )
        return len(doomed)

    def _point(self, record: ModelVersion, reason: str) -> None:
        current = self.pointer(record.kind, record.name)
        previous = [] if current is None else [current.version, *current.previous]
        self._write_pointer(
            LivePointer(
                kind=record.kind,
                name=record.name,
                version=record.version,
                previous=[v for v in previous if v != record.version][:POINTER_HISTORY],
                updated_at=datetime.now(UTC),
                reason=reason,
            )
        )

    def _write_pointer(self, pointer: LivePointer) -> None:
        self._call(
            "index",
            index=self.index,
            id=_pointer_id(pointer.kind, pointer.name),
            body={"record": "live", **pointer.model_dump(mode="json")},
            refresh=True,
        )

    def _set_status(self, record: ModelVersion, status: Status, reason: str) -> None:
        self._call(
            "update",
            index=self.index,
            id=_version_id(record.kind, record.name, record.version),
            body={"doc": {"status": status, "reason": reason}},
            refresh=True,
        )

    # -- reading --------------------------------------------------------------------------------

    def pointer(self, kind: ModelKind, name: str) -> LivePointer | None:
        found = self._call("get", index=self.index, id=_pointer_id(kind, name))
        if not found.get("found"):
            return None
        try:
            return LivePointer.model_validate(found["_source"])
        except ValidationError:
            log.warning("the live pointer of %s %r is unreadable", kind, name)
            return None

    def live_versions(self, names: dict[ModelKind, str]) -> dict[ModelKind, int | None]:
        """The live version of each kind, in one request: what servers poll."""
        ids = [_pointer_id(kind, name) for kind, name in names.items()]
        try:
            found = self._client.mget(index=self.index, body={"ids": ids}, _source=["version"])
        except TransportError as exc:
            raise opensearch_error(exc, self._settings.opensearch_url) from None
        versions: dict[ModelKind, int | None] = {}
        for kind, doc in zip(names, found["docs"], strict=True):
            version = (doc.get("_source") or {}).get("version") if doc.get("found") else None
            versions[kind] = int(version) if isinstance(version, int) else None
        return versions

    def get(self, kind: ModelKind, name: str, version: int) -> ModelVersion:
        found = self._call(
            "get", index=self.index, id=_version_id(kind, name, version), _source_excludes=["blob"]
        )
        if not found.get("found"):
            raise LtrrError(f"{kind} {name!r} has no version {version}")
        return ModelVersion.model_validate(found["_source"])

    def load(self, kind: ModelKind, name: str, version: int) -> tuple[ModelVersion, bytes]:
        """A version's record and bytes; LtrrError when it is missing or its bytes do not match
        their checksum."""
        found = self._call("get", index=self.index, id=_version_id(kind, name, version))
        if not found.get("found"):
            raise LtrrError(f"{kind} {name!r} has no version {version}")
        source = found["_source"]
        try:
            record = ModelVersion.model_validate(source)
            blob = base64.b64decode(source.get("blob") or "", validate=True)
        except (ValidationError, ValueError) as exc:
            raise LtrrError(f"{kind} {name!r} v{version} is unreadable: {exc}") from None
        if hashlib.sha256(blob).hexdigest() != record.sha256:
            raise LtrrError(f"{record.label} does not match its checksum")
        return record, blob

    def versions(
        self, kind: ModelKind | None = None, name: str | None = None, limit: int = 1000
    ) -> list[ModelVersion]:
        """Stored versions, newest first."""
        filters: list[dict[str, Any]] = [{"term": {"record": "version"}}]
        if kind is not None:
            filters.append({"term": {"kind": kind}})
        if name is not None:
            filters.append({"term": {"name": name}})
        body = {
            "size": limit,
            "query": {"bool": {"filter": filters}},
            "sort": [{"created_at": "desc"}, {"version": "desc"}],
            "_source": {"excludes": ["blob"]},
        }
        hits = self._call("search", index=self.index, body=body)["hits"]["hits"]
        return [ModelVersion.model_validate(hit["_source"]) for hit in hits]

    def _newest_number(self, kind: str, name: str) -> int:
        body = {
            "size": 0,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"record": "version"}},
                        {"term": {"kind": kind}},
                        {"term": {"name": name}},
                    ]
                }
            },
            "aggs": {"newest": {"max": {"field": "version"}}},
        }
        value = self._call("search", index=self.index, body=body)["aggregations"]["newest"]
        return int(value.get("value") or 0)
