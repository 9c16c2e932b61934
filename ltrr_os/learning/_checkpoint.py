"""The learner's durable state in OpenSearch (`<prefix>state`): its checkpoint, its lease, and
the cluster's clock.

- The checkpoint says how far the log has been applied to the memory and the profiles, and the
  batch under way: a batch is written as *pending* (its number and log window) before anything
  of it is applied and *committed* after, so a learner killed in between applies exactly that
  window again, under the same number, which the memory and the profiles recognise and skip.
- The lease makes one learner the writer: a second one waits (`ltrr learn`) or refuses (`--once`)
  until the lease is released or expires. It is renewed on every step, compare-and-set.
- The clock: the time the cluster stamps on arrivals (the ingest pipeline's), read back from
  the lease on each renewal (which the pipeline stamps too), so neither the watermark nor the
  lease's expiry depends on a learner host's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, TransportError
from pydantic import BaseModel, Field

from .._errors import LtrrError
from ..config import LtrrSettings
from ..opensearch import INGEST_PIPELINE, opensearch_error
from ._log import millis

CHECKPOINT_ID = "learner-checkpoint"
LEASE_ID = "learner-lease"


class PendingBatch(BaseModel):
    batch: int = Field(ge=1)
    after_ms: int
    until_ms: int


class Checkpoint(BaseModel):
    """How far the learner has applied the log (arrival times, epoch milliseconds)."""

    events_ms: int = Field(default=0, description="memory and profiles: applied up to here")
    settle_ms: int = Field(default=0, description="policy: searches settled up to here")
    batch: int = Field(default=0, description="the last committed batch")
    pending: PendingBatch | None = None
    counts: dict[str, int] = Field(default_factory=dict, description="what was applied, ever")


class LeaseHeldError(LtrrError):
    """Another learner holds the lease."""


class LearnerState:
    """Checkpoint, lease and clock of the learner named `owner`."""

    def __init__(self, client: OpenSearch, settings: LtrrSettings, owner: str) -> None:
        self._client = client
        self._settings = settings
        self.owner = owner
        self.index = settings.index_name("state")
        self._pipeline = settings.index_name(INGEST_PIPELINE)
        self._lease: tuple[int, int] | None = None  # seq_no, primary_term of our lease

    def _fail(self, exc: TransportError) -> LtrrError:
        return opensearch_error(exc, self._settings.opensearch_url)

    def load(self) -> Checkpoint:
        try:
            found = self._client.get(index=self.index, id=CHECKPOINT_ID, ignore=404)
        except TransportError as exc:
            raise self._fail(exc) from None
        if not found.get("found"):
            return Checkpoint()
        return Checkpoint.model_validate(found["_source"]["payload"])

    def save(self, checkpoint: Checkpoint) -> None:
        try:
            self._client.index(
                index=self.index,
                id=CHECKPOINT_ID,
                body={
                    "kind": "learner-checkpoint",
                    "updated_at": datetime.now(UTC).isoformat(),
                    "payload": checkpoint.model_dump(mode="json"),
                },  # read back by id only, which is real time: no refresh to wait for
            )
        except TransportError as exc:
            raise self._fail(exc) from None

    def acquire(self, lease_s: float) -> datetime:
        """Take or renew the lease; returns the cluster's time. Raises LeaseHeldError when another
        learner holds a lease that has not expired."""
        try:
            current = self._client.get(index=self.index, id=LEASE_ID, ignore=404)
        except TransportError as exc:
            raise self._fail(exc) from None
        if not current.get("found"):
            current = None
        body = {
            "kind": "learner-lease",
            "owner": self.owner,
            "lease_s": lease_s,
            "payload": {},
        }
        try:
            if current is None:
                written = self._client.create(
                    index=self.index, id=LEASE_ID, body=body, pipeline=self._pipeline
                )
            else:
                holder = current["_source"].get("owner")
                renewed = millis(datetime.fromisoformat(str(current["_source"]["ingested_at"])))
                if holder != self.owner:
                    now = self.clock()
                    held_for = float(current["_source"].get("lease_s") or lease_s)
                    if millis(now) - renewed < held_for * 1000:
                        raise LeaseHeldError(
                            f"another learner ({holder}) holds the lease (renewed "
                            f"{(millis(now) - renewed) / 1000:.1f} s ago, expires after "
                            f"{held_for:.0f} s)"
                        )
                written = self._client.index(
                    index=self.index,
                    id=LEASE_ID,
                    body=body,
                    pipeline=self._pipeline,
                    if_seq_no=current["_seq_no"],
                    if_primary_term=current["_primary_term"],
                )
        except ConflictError:
            raise LeaseHeldError("another learner took the lease at the same moment") from None
        except TransportError as exc:
            raise self._fail(exc) from None
        self._lease = (written["_seq_no"], written["_primary_term"])
        try:
            stamped = self._client.get(index=self.index, id=LEASE_ID)["_source"]
        except TransportError as exc:
            raise self._fail(exc) from None
        return datetime.fromisoformat(str(stamped["ingested_at"]))

    def release(self) -> None:
        """Give the lease up (only if still ours)."""
        if self._lease is None:
            return
        seq_no, term = self._lease
        try:
            self._client.delete(
                index=self.index, id=LEASE_ID, if_seq_no=seq_no, if_primary_term=term, ignore=404
            )
        except ConflictError:
            pass
        except TransportError as exc:
            raise self._fail(exc) from None
        self._lease = None

    def clock(self) -> datetime:
        """The cluster's time, as its ingest pipeline stamps arrivals."""
        doc_id = f"learner-clock-{self.owner}"
        try:
            self._client.index(
                index=self.index,
                id=doc_id,
                body={"kind": "learner-clock", "payload": {}},
                pipeline=self._pipeline,
            )
            stamped: dict[str, Any] = self._client.get(index=self.index, id=doc_id)["_source"]
        except TransportError as exc:
            raise self._fail(exc) from None
        return datetime.fromisoformat(str(stamped["ingested_at"]))
