"""A durable local spool for UBI documents: a record is on disk before ltrr-os learns from it, and
reaches OpenSearch exactly once even across outages and crashes.

One directory, owned by one `Spool` at a time (an flock on `.lock`):

- `segment-<n>.jsonl`: append-only, one record per line as `<crc32 of payload, 8 hex> <payload>`
  where the payload is the record's JSON. Every open starts a new segment, so a torn tail left by a
  crash is never appended to; a segment also ends once it holds `segment_bytes`.
- `state.json`: the delivery cursor (segment, byte offset); every line before it is resolved
  (delivered, already there, dead-lettered, or skipped as torn/corrupt). Replaced atomically.
- `dead-letter.jsonl`: records OpenSearch rejects for good, with the reason.

Exactly once comes from bulk `create` with the caller's deterministic `_id`: a record sent again
after a crash (between the bulk request and the cursor update) is answered 409 and counted as a
duplicate, never written twice. Segments behind the cursor are deleted.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticSerializationError

from .._durable import fsync_directory, replace_atomically
from .._errors import LtrrError

logger = logging.getLogger(__name__)

_STATE = "state.json"
_DEAD_LETTER = "dead-letter.jsonl"
_LOCK = ".lock"
_SEGMENT_PREFIX, _SEGMENT_SUFFIX = "segment-", ".jsonl"
_MAX_ID_BYTES = 512  # OpenSearch refuses longer _id values, failing the whole bulk request
_MAX_BACKOFF_S = 30.0
_IDS_IN_LOG = 10
_WHY_SKIPPED = {
    "torn": "no end of line: a crash cut its append short, so that append was never acknowledged",
    "corrupt": "its checksum does not match",
    "unreadable": "its checksum matches but it is not a spool record",
}
# Item errors that a retry cannot fix: the document does not fit the index (or its name is invalid).
_PERMANENT_ERRORS = frozenset(
    {
        "mapper_parsing_exception",
        "document_parsing_exception",
        "strict_dynamic_mapping_exception",
        "illegal_argument_exception",
        "invalid_index_name_exception",
    }
)


class SpoolRecord(BaseModel):
    """One document bound for `index`; `doc_id` must be deterministic so a re-send is recognised.

    NaN and infinite floats are stored as null: JSON (and OpenSearch) has no such numbers.
    """

    model_config = ConfigDict(extra="forbid")

    index: str = Field(min_length=1)
    doc_id: str = Field(min_length=1)
    document: dict[str, Any]

    @field_validator("doc_id")
    @classmethod
    def _check_id_length(cls, value: str) -> str:
        if len(value.encode()) > _MAX_ID_BYTES:
            raise ValueError(f"doc_id is longer than {_MAX_ID_BYTES} bytes")
        return value


class DeliveryReport(BaseModel):
    """What a delivery did; `error` says why records stayed pending (None when none are stuck)."""

    delivered: int = 0
    duplicates: int = 0
    pending: int = 0
    dead_lettered: int = 0
    error: str | None = None


class _State(BaseModel):
    """state.json: everything before this position is resolved."""

    segment: int = Field(ge=0)
    offset: int = Field(ge=0)


class _DeadLetter(BaseModel):
    """A line of dead-letter.jsonl: the record as appended and why OpenSearch refused it."""

    index: str
    doc_id: str
    document: dict[str, Any]
    status: int
    reason: str
    failed_at: datetime


class _Position(NamedTuple):
    """Where a line starts; tuple order is append order."""

    segment: int
    offset: int


@dataclass(frozen=True)
class _Line:
    """A line read back from a segment; `payload` is None when it is torn or corrupt (`problem`)."""

    position: _Position
    end: int
    payload: bytes | None
    problem: str = ""


class Spool:
    """Durable, ordered, exactly-once path from ltrr-os to OpenSearch (format: module docstring)."""

    def __init__(
        self, directory: Path, *, fsync: bool = True, segment_bytes: int = 8 * 1024 * 1024
    ) -> None:
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        self._directory = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()  # guards segment ends, the active file, pending, closed
        self._deliver_lock = threading.Lock()  # one delivery at a time; owns cursor and warnings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._active: int | None = None
        self._active_fd = -1
        self._warned: set[_Position] = set()
        # Resolved lines behind a stuck one: not sent again while the cursor waits for it.
        self._resolved_ahead: set[_Position] = set()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_directory(directory)
        except OSError as exc:
            raise LtrrError(f"cannot open the spool in {directory}: {exc}") from exc
        try:
            self._cursor = self._load_cursor()
            self._ends = _segments_on_disk(directory)
            self._next_segment = max([*self._ends, self._cursor.segment]) + 1
            self._pending = sum(
                line.payload is not None for line in self._lines(self._cursor, self._ends)
            )
            self._drop_consumed()
        except OSError as exc:
            os.close(self._lock_fd)
            raise LtrrError(f"cannot read the spool in {directory}: {exc}") from exc

    @property
    def dead_letter_path(self) -> Path:
        """JSON lines of the records OpenSearch refused for good, each with its reason."""
        return self._directory / _DEAD_LETTER

    def append(self, records: Sequence[SpoolRecord]) -> None:
        """Store `records`; on return they survive a crash (and a power loss when fsync is on)."""
        if not records:
            return
        data = b"".join(_encode(record) for record in records)
        with self._lock:
            if self._closed:
                raise LtrrError("the spool is closed")
            fd, segment = self._writable_segment()
            start = self._ends[segment]
            try:
                _write_all(fd, data)
                if self._fsync:
                    os.fsync(fd)
            except OSError as exc:
                self._abandon_active(segment, start)
                raise LtrrError(
                    f"could not write {len(records)} records to the spool in "
                    f"{self._directory}: {exc}"
                ) from exc
            self._ends[segment] = start + len(data)
            self._pending += len(records)

    def pending(self) -> int:
        """Records stored but not yet delivered (nor dead-lettered)."""
        with self._lock:
            return self._pending

    def deliver(self, client: OpenSearch, *, max_records: int = 5000) -> DeliveryReport:
        """Send up to `max_records` pending records in append order with one bulk request.

        Never raises for OpenSearch trouble (the report says what happened); raises LtrrError only
        when the spool's own files cannot be read or written.
        """
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        with self._deliver_lock:
            if self._closed:
                raise LtrrError("the spool is closed")
            return self._deliver_batch(client, max_records)

    def start_delivery(
        self, client_factory: Callable[[], OpenSearch], interval_s: float = 1.0
    ) -> None:
        """Deliver from a background thread every `interval_s`, backing off while it fails."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        with self._lock:
            if self._closed:
                raise LtrrError("the spool is closed")
            if self._thread is not None:
                raise LtrrError("background delivery is already running")
            self._thread = threading.Thread(
                target=self._delivery_loop,
                args=(client_factory, interval_s),
                name="ltrr-spool-delivery",
                daemon=True,
            )
            self._thread.start()

    def close(
        self, client: OpenSearch | None = None, timeout_s: float = 10.0
    ) -> DeliveryReport | None:
        """Stop background delivery, deliver what is left with `client` (until `timeout_s` runs out
        or a delivery fails), then release the directory. Returns None without a client."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                logger.warning("spool delivery thread still busy after %.1f s", timeout_s)
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            self._seal_active()
        try:
            return None if client is None else self._drain(client, deadline)
        finally:
            os.close(self._lock_fd)

    def _drain(self, client: OpenSearch, deadline: float) -> DeliveryReport:
        total = DeliveryReport(pending=self.pending())
        while total.pending and total.error is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._deliver_lock.acquire(timeout=remaining):
                return total.model_copy(update={"error": "close() ran out of time"})
            try:
                batch = self._deliver_batch(client, 5000, max(0.1, deadline - time.monotonic()))
            finally:
                self._deliver_lock.release()
            total = DeliveryReport(
                delivered=total.delivered + batch.delivered,
                duplicates=total.duplicates + batch.duplicates,
                dead_lettered=total.dead_lettered + batch.dead_lettered,
                pending=batch.pending,
                error=batch.error,
            )
        return total

    def _delivery_loop(self, client_factory: Callable[[], OpenSearch], interval_s: float) -> None:
        """Runs until close(); after a failure waits twice as long each time (at most 30 s).

        The factory's client is not closed here: it may well be shared with the caller.
        """
        client: OpenSearch | None = None
        delay = interval_s
        failing = False
        while not self._stop.is_set():
            progress = False
            try:
                if client is None:
                    client = client_factory()
                report = self.deliver(client)
                error = report.error
                progress = report.pending > 0 and (
                    report.delivered + report.duplicates + report.dead_lettered > 0
                )
            except LtrrError as exc:
                error = str(exc)
            except Exception as exc:  # the thread must outlive any failure
                logger.debug("spool delivery raised", exc_info=True)  # may quote documents
                error = f"{type(exc).__name__} (details at debug level)"
            if error is None:
                if failing:
                    logger.info("spool delivery works again; %d records pending", self.pending())
                failing, delay = False, interval_s
                if progress:
                    continue  # a full batch went through: more is waiting
            else:
                if not failing:
                    logger.warning(
                        "spool delivery failed, retrying with backoff (%d records pending): %s",
                        self.pending(),
                        error,
                    )
                delay = min(delay * 2, max(interval_s, _MAX_BACKOFF_S)) if failing else delay
                failing = True
            self._stop.wait(delay)

    def _deliver_batch(
        self, client: OpenSearch, max_records: int, timeout_s: float | None = None
    ) -> DeliveryReport:
        with self._lock:
            ends = dict(self._ends)
        window: list[_Line] = []
        records: dict[_Position, SpoolRecord] = {}
        skipped = 0  # lines whose checksum holds but whose content is not a record
        try:
            for line in self._lines(self._cursor, ends):
                window.append(line)
                if line.payload is None:
                    continue
                try:
                    records[line.position] = SpoolRecord.model_validate_json(line.payload)
                except ValidationError:
                    skipped += 1
                    self._warn_bad(line, "unreadable")
                if len(records) + skipped >= max_records:
                    break
        except OSError as exc:
            raise LtrrError(f"cannot read the spool in {self._directory}: {exc}") from exc
        to_send = [(p, r) for p, r in records.items() if p not in self._resolved_ahead]
        outcome = _BulkOutcome()
        if to_send:
            try:
                # require_alias: a missing alias must not be recreated as a dynamic index.
                response = client.bulk(
                    body=_bulk_body(r for _, r in to_send),
                    require_alias=True,
                    **({} if timeout_s is None else {"request_timeout": timeout_s}),
                )
            except OpenSearchConnectionError as exc:
                return DeliveryReport(
                    pending=self.pending(), error=f"OpenSearch is unreachable: {_describe(exc)}"
                )
            except TransportError as exc:
                return DeliveryReport(
                    pending=self.pending(),
                    error=f"the bulk request failed with HTTP {exc.status_code} ({_kind(exc)})",
                )
            outcome = _BulkOutcome.of(to_send, response["items"])
        if outcome.dead:
            self._write_dead_letters(outcome.dead)
        self._advance(window, records, outcome.resolved)
        with self._lock:
            self._pending -= len(outcome.resolved) + skipped
            pending = self._pending
        return DeliveryReport(
            delivered=outcome.delivered,
            duplicates=outcome.duplicates,
            dead_lettered=len(outcome.dead),
            pending=pending,
            error=outcome.stuck_message(),
        )

    def _advance(
        self, window: list[_Line], records: dict[_Position, SpoolRecord], resolved: set[_Position]
    ) -> None:
        """Move the cursor over the longest resolved prefix of `window`; remember the rest."""
        done = resolved | self._resolved_ahead
        cursor = self._cursor
        for line in window:
            if line.position in records and line.position not in done:
                break
            cursor = _Position(line.position.segment, line.end)
        self._resolved_ahead = {p for p in done if p >= cursor}
        if cursor == self._cursor:
            return
        try:
            self._save_cursor(cursor)
        except OSError as exc:
            raise LtrrError(f"cannot record delivery progress in {self._directory}: {exc}") from exc
        self._cursor = cursor
        with self._lock:
            self._drop_consumed()

    def _lines(self, start: _Position, ends: dict[int, int]) -> Iterator[_Line]:
        """Lines from `start` on, in append order; torn and corrupt ones are yielded and warned."""
        for segment in sorted(s for s in ends if s >= start.segment):
            first = start.offset if segment == start.segment else 0
            for line in _scan(self._segment_path(segment), segment, first, ends[segment]):
                if line.payload is None:
                    self._warn_bad(line, line.problem)
                yield line

    def _warn_bad(self, line: _Line, problem: str) -> None:
        if line.position in self._warned:
            return
        self._warned.add(line.position)
        logger.warning(
            "spool: skipping a %s record in %s at offset %d (%d bytes; %s)",
            problem,
            self._segment_path(line.position.segment),
            line.position.offset,
            line.end - line.position.offset,
            _WHY_SKIPPED[problem],
        )

    def _writable_segment(self) -> tuple[int, int]:
        """The open file to append to, starting a new segment when there is none or it is full."""
        if self._active is not None and self._ends[self._active] < self._segment_bytes:
            return self._active_fd, self._active
        self._seal_active()
        segment = self._next_segment
        self._next_segment += 1
        path = self._segment_path(segment)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise LtrrError(f"could not create spool segment {path}: {exc}") from exc
        try:
            if self._fsync:
                fsync_directory(self._directory)  # the new name must survive a power loss too
        except OSError as exc:
            os.close(fd)
            raise LtrrError(f"could not create spool segment {path}: {exc}") from exc
        self._active, self._active_fd, self._ends[segment] = segment, fd, 0
        return fd, segment

    def _seal_active(self) -> None:
        if self._active is not None:
            os.close(self._active_fd)
            self._active, self._active_fd = None, -1

    def _abandon_active(self, segment: int, start: int) -> None:
        """After a failed write: cut it off and never append to that segment again."""
        try:
            os.ftruncate(self._active_fd, start)
        except OSError:
            logger.warning(
                "spool: could not cut a failed write from %s; its complete lines may still be "
                "delivered after a restart",
                self._segment_path(segment),
            )
        self._seal_active()

    def _drop_consumed(self) -> None:
        """Delete finished segments behind the cursor (the cursor is saved first, so a crash in
        between only leaves files the next open deletes)."""
        for segment, end in list(self._ends.items()):
            if segment != self._active and _Position(segment, end) <= self._cursor:
                path = self._segment_path(segment)
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    logger.warning("spool: could not delete delivered segment %s: %s", path, exc)
                del self._ends[segment]

    def _load_cursor(self) -> _Position:
        path = self._directory / _STATE
        try:
            state = _State.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return _Position(0, 0)
        except (OSError, ValidationError) as exc:
            logger.warning(
                "spool: %s is unreadable (%s); sending every stored record again "
                "(OpenSearch answers 409 for those it has)",
                path,
                type(exc).__name__,
            )
            return _Position(0, 0)
        return _Position(state.segment, state.offset)

    def _save_cursor(self, cursor: _Position) -> None:
        state = _State(segment=cursor.segment, offset=cursor.offset).model_dump_json().encode()
        replace_atomically(self._directory / _STATE, state, durable=self._fsync)

    def _write_dead_letters(self, letters: list[_DeadLetter]) -> None:
        data = b"".join(letter.model_dump_json().encode() + b"\n" for letter in letters)
        try:
            with self.dead_letter_path.open("ab+") as file:
                size = file.seek(0, os.SEEK_END)
                if size:
                    file.seek(size - 1)
                    if file.read(1) != b"\n":
                        data = b"\n" + data  # a crash tore the last line: keep this one readable
                file.write(data)
                file.flush()
                if self._fsync:
                    os.fsync(file.fileno())
        except OSError as exc:
            raise LtrrError(
                f"cannot write the dead-letter file {self.dead_letter_path}: {exc}"
            ) from exc
        logger.warning(
            "spool: moved %d records OpenSearch refused (%s) to %s; ids: %s",
            len(letters),
            ", ".join(sorted({letter.reason.split(":")[0] for letter in letters})),
            self.dead_letter_path,
            ", ".join(letter.doc_id for letter in letters[:_IDS_IN_LOG]),
        )

    def _segment_path(self, segment: int) -> Path:
        return self._directory / f"{_SEGMENT_PREFIX}{segment:012d}{_SEGMENT_SUFFIX}"


@dataclass
class _BulkOutcome:
    """A bulk response sorted out per record."""

    delivered: int = 0
    duplicates: int = 0
    dead: list[_DeadLetter] = field(default_factory=list)
    resolved: set[_Position] = field(default_factory=set)
    stuck: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, sent: list[tuple[_Position, SpoolRecord]], items: list[Any]) -> _BulkOutcome:
        outcome = cls()
        now = datetime.now(UTC)
        for (position, record), item in zip(sent, items, strict=True):
            result = next(iter(item.values()))
            status = int(result.get("status", 0))
            if status in (200, 201):
                outcome.delivered += 1
            elif status == 409:
                outcome.duplicates += 1
            else:
                kind, reason = _item_error(result.get("error"), status)
                if kind not in _PERMANENT_ERRORS:
                    outcome.stuck[kind] += 1
                    continue
                outcome.dead.append(
                    _DeadLetter(**record.model_dump(), status=status, reason=reason, failed_at=now)
                )
            outcome.resolved.add(position)
        return outcome

    def stuck_message(self) -> str | None:
        if not self.stuck:
            return None
        kinds = ", ".join(f"{kind} ({count})" for kind, count in self.stuck.most_common())
        return f"{self.stuck.total()} records kept pending after item errors: {kinds}"


def _item_error(error: Any, status: int) -> tuple[str, str]:
    """The error type of a failed bulk item, and a reason with its cause (for the dead letter)."""
    if not isinstance(error, dict):
        return f"HTTP {status}", str(error)
    kind = str(error.get("type", f"HTTP {status}"))
    reason = f"{kind}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        reason += f" (caused by {cause.get('type')}: {cause.get('reason')})"
    return kind, reason


def _bulk_body(records: Iterator[SpoolRecord]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = []
    for record in records:
        body.append({"create": {"_index": record.index, "_id": record.doc_id}})
        body.append(record.document)
    return body


def _describe(exc: OpenSearchConnectionError) -> str:
    """The cause of a connection error, without the request (whose body holds documents)."""
    return str(exc.info) if isinstance(exc.info, Exception) else str(exc.error)


def _kind(exc: TransportError) -> str:
    """The error type OpenSearch named, never a raw response body (it may quote documents)."""
    error = exc.error
    return error if isinstance(error, str) and error.replace("_", "").isalpha() else "unnamed"


def _encode(record: SpoolRecord) -> bytes:
    try:
        payload = record.model_dump_json().encode()
    except PydanticSerializationError as exc:
        raise LtrrError(f"record {record.doc_id!r} cannot be stored as JSON: {exc}") from exc
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _scan(path: Path, segment: int, start: int, end: int) -> Iterator[_Line]:
    """The lines of `path` between two offsets, each checked: complete and checksum intact."""
    with path.open("rb") as file:
        file.seek(start)
        offset = start
        while offset < end:
            raw = file.readline(end - offset)
            if not raw:
                return  # the file is shorter than recorded
            yield _check(raw, _Position(segment, offset))
            offset += len(raw)


def _check(raw: bytes, position: _Position) -> _Line:
    end = position.offset + len(raw)
    if not raw.endswith(b"\n"):
        return _Line(position, end, None, "torn")
    checksum, _, payload = raw[:-1].partition(b" ")
    try:
        intact = len(checksum) == 8 and int(checksum, 16) == zlib.crc32(payload)
    except ValueError:
        intact = False
    return _Line(position, end, payload) if intact else _Line(position, end, None, "corrupt")


def _segments_on_disk(directory: Path) -> dict[int, int]:
    """Segment number -> size in bytes."""
    found: dict[int, int] = {}
    for path in directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}"):
        number = path.name.removeprefix(_SEGMENT_PREFIX).removesuffix(_SEGMENT_SUFFIX)
        if number.isdigit():
            found[int(number)] = path.stat().st_size
    return found


class SpoolBusyError(LtrrError):
    """Another `Spool` (in this or another process) has the directory open."""


def _lock_directory(directory: Path) -> int:
    """An exclusive flock: two spools appending to one directory would corrupt each other."""
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolBusyError(
            f"the spool in {directory} is already open (in this or another process)"
        ) from None
    return fd


INSTANCE_PREFIX = "instance-"


def claim_spool(directory: Path, **options: Any) -> Spool:
    """A spool of this process's own under `directory`: the first instance slot
    (`instance-<n>`) no other process holds. So any number of serving processes on a host
    share one `spool_dir`, each appending to its own durable log, and a slot left by a process
    that died (with records not yet delivered) is taken, and delivered, by the next one."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LtrrError(f"cannot open the spool in {directory}: {exc}") from exc
    for number in itertools.count():
        try:
            return Spool(directory / f"{INSTANCE_PREFIX}{number:03d}", **options)
        except SpoolBusyError:
            continue
    raise AssertionError("unreachable")


def deliver_unclaimed(directory: Path, client: OpenSearch, timeout_s: float = 10.0) -> int:
    """Deliver what slots no process holds still keep (processes that stopped, or the single
    spool of ltrr-os before instance slots); returns how many records went out."""
    delivered = 0
    slots = [directory] if _segments_on_disk(directory) else []
    slots += sorted(directory.glob(f"{INSTANCE_PREFIX}*"))
    for slot in slots:
        try:
            spool = Spool(slot)
        except SpoolBusyError:
            continue
        if spool.pending() == 0:
            spool.close()
            continue
        report = spool.close(client, timeout_s)
        delivered += report.delivered if report is not None else 0
    return delivered
