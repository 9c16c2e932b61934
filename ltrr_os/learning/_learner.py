"""The learner: the one writer of what ltrr-os learns.

Serving processes log searches and events (UBI, through their spools) and read learned state;
they never write it. The learner reads the logs in arrival order (`UbiLog`) and applies them:

- **memory and profiles**, as events arrive: each engagement joins its search (the search may
  have arrived first or later, from any server: an event is applied in the window where the
  later of the two arrived), passes the learning rules (shown, capped, clamped), and the batch
  is written to the memory and the profiles under a batch number (see `LearnerState`);
- **the policy**, as searches settle (their reward window has passed in the log): each shown
  search teaches the bandit on the context and action features logged with its decision. The
  policy is published to the model index every `publish_s` while it learns, with the log
  position it has learned up to, so a restarted learner resumes it exactly there;
- **the ranker**, every `ranker_every` engaged searches (or on command): trained from the logs,
  stored, and promoted only if it beats the live ranking on held-out searches.

Killed at any point and restarted, it resumes from its checkpoint: nothing applied twice, nothing
skipped. `ltrr replay` is this learner run from the start of the log on reset state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError
from pydantic import BaseModel, ConfigDict, Field

from .._errors import LtrrError
from ..catalog import entity_vectors
from ..config import CatalogSchema, LtrrSettings
from ..feedback import ProfileStore
from ..memory import MemoryBatch, apply_memory, reset_memory
from ..models import ModelStore, policy_gate, who
from ..policy import (
    DEFAULT_POLICY_NAME,
    ENGAGEMENT_WEIGHTS,
    DecisionContext,
    LoggedRound,
    PlanBandit,
    VWBandit,
    new_default_policy,
    policy_from_bytes,
)
from ._checkpoint import Checkpoint, LearnerState, LeaseHeldError, PendingBatch
from ._log import UbiLog, from_millis, millis, search_record
from ._rules import LearningRules, LoggedEvent, LoggedSearch

log = logging.getLogger(__name__)

CACHED_SEARCHES = 100_000
GATE_HOLDOUT = 0.2
"""The newest share of a rebuild's logged decisions the policy gate compares on..."""
GATE_MAX_DECISIONS = 5_000
"""...at most this many (what a rebuild keeps of them: contexts are not small)."""
MAX_BACKOFF_S = 5.0
"""The longest a failing learner waits before trying again (an upgrade's copy may take minutes,
and the learner should follow soon after the alias moves)."""
SETTLE_FIELDS = {"includes": ["ltrr"], "excludes": ["ltrr.features"]}


class LearnerConfig(BaseModel):
    """How the learner paces itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lag_s: float = Field(
        default=1.0, ge=0, description="how far behind the cluster's clock it reads the log"
    )
    poll_s: float = Field(default=0.5, gt=0, description="pause between steps when caught up")
    lease_s: float = Field(
        default=30.0, gt=0, description="how long the lease of a silent learner lasts"
    )
    max_window_s: float = Field(
        default=600.0, gt=0, description="most log time one batch covers (catching up)"
    )
    policy_name: str = DEFAULT_POLICY_NAME
    publish_s: float = Field(
        default=2.0, ge=0, description="publish the learning policy at most this often"
    )
    keep_versions: int = Field(default=20, ge=2, description="policy versions kept")


class LearnerReport(BaseModel):
    """What the learner did (one step, or every step of a run)."""

    batches: int = 0
    events: int = Field(default=0, description="engagement events applied to the memory")
    memory_entities: int = 0
    unshown: int = Field(default=0, description="engagements with items never shown/retrieved")
    capped: int = Field(
        default=0, description="engagements cut by the caps (per search, per user and day)"
    )
    missing_entities: int = 0
    settled: int = Field(default=0, description="searches whose window passed")
    not_shown: int = Field(default=0, description="settled searches with no event: no lesson")
    policy_lessons: int = 0
    unreadable: int = 0
    published: list[str] = Field(default_factory=list)
    log_lag_s: float = Field(default=0.0, description="cluster time minus how far it has read")
    caught_up: bool = Field(default=True, description="nothing left to read below the watermark")

    def add(self, other: LearnerReport) -> None:
        for name in type(self).model_fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, list):
                mine.extend(theirs)
            elif name in ("log_lag_s", "caught_up"):
                setattr(self, name, theirs)
            else:
                setattr(self, name, mine + theirs)


class Learner:
    """Reads the UBI logs and writes learned state (see the module docstring). One at a time per
    deployment: the lease makes a second learner wait."""

    def __init__(
        self,
        client: OpenSearch,
        settings: LtrrSettings,
        *,
        config: LearnerConfig | None = None,
        rules: LearningRules | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or LearnerConfig()
        self.rules = rules or LearningRules(reward_window_s=settings.reward_window_s)
        self._client = client
        self._log = UbiLog(client, settings)
        self._state = LearnerState(client, settings, owner or who())
        self._models = ModelStore(client, settings)
        self._profiles = ProfileStore(client, settings)
        self._searches: OrderedDict[str, LoggedSearch] = OrderedDict()
        self._checkpoint: Checkpoint | None = None
        self.policy: VWBandit = self._new_policy()
        self._policy_ms = 0
        self._policy_dirty = False
        self._published_at = 0.0
        self._live_policy: int | None = None
        self._lock = threading.RLock()
        self._rebuilding = False
        # A rebuild's newest logged decisions and how many it saw, for the policy gate.
        self._validation: deque[tuple[DecisionContext, LoggedRound]] = deque(
            maxlen=GATE_MAX_DECISIONS
        )
        self._validated = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def _new_policy(self) -> VWBandit:
        """An untrained policy paying the configured cost per candidate."""
        return new_default_policy(self.settings.cost_per_candidate)

    @property
    def started(self) -> bool:
        return self._checkpoint is not None

    def start(self) -> datetime:
        """Take the lease, load the checkpoint and the live policy; returns the cluster time.
        Raises LeaseHeldError when another learner is running."""
        with self._lock:
            now = self._state.acquire(self.config.lease_s)
            self._checkpoint = self._state.load()
            self._load_policy()
            return now

    def _load_policy(self) -> None:
        """The live policy and how far it has learned; a new one when none is live."""
        name = self.config.policy_name
        pointer = self._models.pointer("policy", name)
        if pointer is None:
            self.policy, self._policy_ms, self._live_policy = (
                self._new_policy(),
                0,
                None,
            )
            return
        record, blob = self._models.load("policy", name, pointer.version)
        policy = policy_from_bytes(blob)
        policy.version = record.version
        self.policy = policy
        self._policy_ms = int(record.trained_on.get("settle_ms", 0))
        self._live_policy = record.version
        self._policy_dirty = False

    def stop(self) -> None:
        """Publish what the policy learned since the last publication, give up the lease."""
        with self._lock:
            if self._checkpoint is None:
                return
            try:
                self.publish_policy("the learner stopped")
            finally:
                self._checkpoint = None
                self._state.release()

    def run_once(self, *, settle_all: bool = False) -> LearnerReport:
        """Start, catch up with the log, stop (`ltrr learn --once`)."""
        self.start()
        try:
            return self.catch_up(settle_all=settle_all)
        finally:
            self.stop()

    def rebuild(self, schema: CatalogSchema, *, settle_all: bool = False) -> LearnerReport:
        """`ltrr replay`: forget the memory and the profiles, learn everything again from the
        start of the log (a fresh policy included), and store the rebuilt policy: promoted if
        it passes the policy gate (its estimate on the newest logged decisions against what
        the live policy earned on them), else kept as a candidate with the gate's reason."""
        self.start()
        try:
            with self._lock:
                reset_memory(self._client, self.settings, schema)
                self._profiles.delete_all()
                self._searches.clear()
                self._checkpoint = Checkpoint()
                self._state.save(self._checkpoint)
                self.policy, self._policy_ms, self._policy_dirty = (
                    self._new_policy(),
                    0,
                    False,
                )
                self._rebuilding = True
                self._validation.clear()
                self._validated = 0
            try:
                report = self.catch_up(settle_all=settle_all)
            except BaseException:
                self._policy_dirty = False  # half a rebuild is published as nothing
                raise
            finally:
                self._rebuilding = False
            with self._lock:
                gate = policy_gate(self._held_out())
                self._validation.clear()
                record = self._models.publish(
                    "policy",
                    self.config.policy_name,
                    self.policy.to_bytes(),
                    status="promoted" if gate.promote else "candidate",
                    parent=self._live_policy,
                    trained_on=self._trained_on(),
                    metrics={"updates": self.policy.updates, "gate": gate.metrics},
                    reason=f"rebuilt from the log by ltrr replay; {gate.reason}",
                )
                report.published.append(
                    f"policy v{record.version} ({record.status}): {gate.reason}"
                )
                self._load_policy()
            return report
        finally:
            self.stop()

    def _held_out(self) -> list[LoggedRound]:
        """The newest share of the rebuild's decisions, each with the rebuilt policy's PMF for
        its context as the target (computed by a copy: predicting moves the policy's
        exploration schedule, and the stored policy must equal what the learner learns)."""
        count = min(len(self._validation), int(self._validated * GATE_HOLDOUT))
        if count == 0:
            return []
        judge = policy_from_bytes(self.policy.to_bytes())
        if not isinstance(judge, PlanBandit):
            return []
        newest = list(self._validation)[len(self._validation) - count :]
        return [judge.with_target(context, logged) for context, logged in newest]

    def catch_up(self, *, settle_all: bool = False, lag_s: float | None = None) -> LearnerReport:
        """Step until both cursors reach the watermark. `settle_all` settles every search
        read without waiting for its reward window (an operator's override: its lessons may
        miss events still to come); `lag_s` overrides how far behind the clock it reads (0 when
        the caller has just flushed the only spool writing to this log)."""
        report = LearnerReport()
        while True:
            step = self.step(settle_all=settle_all, lag_s=lag_s)
            report.add(step)
            if step.caught_up:
                return report

    def run(
        self,
        stop: threading.Event,
        on_step: Callable[[LearnerReport], None] | None = None,
    ) -> None:
        """Learn until `stop` is set; while another learner holds the lease, wait as standby.
        A step that fails (a node away, an index write-blocked while `ltrr bootstrap` copies
        it) committed nothing past what it wrote: it is tried again, less often the longer it
        keeps failing, and its writes, keyed by batch, land once wherever the alias points."""
        failures = 0
        while not stop.is_set():
            try:
                if not self.started:
                    self.start()
                step = self.step()
            except LeaseHeldError as exc:
                if self.started:
                    log.warning("the learner lost its lease: %s; waiting as standby", exc)
                    self._checkpoint = None
                stop.wait(self.config.poll_s * 4)
                continue
            except (LtrrError, TransportError) as exc:
                failures += 1
                backoff = min(self.config.poll_s * 2**failures, MAX_BACKOFF_S)
                log.warning("a learner step failed, retrying in %.1f s: %s", backoff, exc)
                stop.wait(backoff)
                continue
            failures = 0
            if on_step is not None:
                on_step(step)
            if step.caught_up:
                stop.wait(self.config.poll_s)
        self.stop()

    # -- one step --------------------------------------------------------------------------------

    def step(self, *, settle_all: bool = False, lag_s: float | None = None) -> LearnerReport:
        """Renew the lease, then apply one batch of arrivals to memory and profiles and settle
        one window of searches, as far as the watermark allows (`caught_up` once both cursors
        reached it)."""
        with self._lock:
            return self._step(settle_all, self.config.lag_s if lag_s is None else lag_s)

    def _step(self, settle_all: bool, lag_s: float) -> LearnerReport:
        if self._checkpoint is None:
            raise LtrrError("the learner is not started")
        now = self._state.acquire(self.config.lease_s)
        watermark = millis(now - timedelta(seconds=lag_s))
        self._log.refresh()
        report = LearnerReport()
        arrivals_done = self._apply_arrivals(watermark, report)
        window = 0 if settle_all else int(self.rules.reward_window_s * 1000)
        settled_done = self._settle(watermark - window, report)
        if (
            self._policy_dirty
            and not self._rebuilding
            and time.monotonic() - self._published_at >= self.config.publish_s
        ):
            self._publish("online learning")
            report.published.append(f"policy v{self.policy.version}")
        report.log_lag_s = round((millis(now) - self._checkpoint.events_ms) / 1000, 3)
        report.caught_up = arrivals_done and settled_done
        return report

    def _window(self, index: str, after: int, watermark: int) -> int | None:
        """The end of the next batch's window after `after`: at most `max_window_s` past the
        first arrival in `index` after it, and never past the watermark; None when nothing
        arrived."""
        first = self._log.first_arrival(index, after, watermark)
        if first is None:
            return None
        return min(watermark, first + int(self.config.max_window_s * 1000))

    def _apply_arrivals(self, watermark: int, report: LearnerReport) -> bool:
        """One batch; True when the cursor has reached the watermark."""
        checkpoint = self._checkpoint
        assert checkpoint is not None
        pending = checkpoint.pending
        if pending is None:
            until = self._window(self._log.both, checkpoint.events_ms, watermark)
            if until is None:
                checkpoint.events_ms = max(checkpoint.events_ms, watermark)
                return True
            pending = PendingBatch(
                batch=checkpoint.batch + 1, after_ms=checkpoint.events_ms, until_ms=until
            )
            checkpoint.pending = pending
            self._state.save(checkpoint)
        applied = self._apply_batch(pending, report)
        checkpoint.events_ms = pending.until_ms
        checkpoint.batch = pending.batch
        checkpoint.pending = None
        for name, value in applied.items():
            checkpoint.counts[name] = checkpoint.counts.get(name, 0) + value
        self._state.save(checkpoint)
        report.batches += 1
        return checkpoint.events_ms >= watermark

    def _apply_batch(self, batch: PendingBatch, report: LearnerReport) -> dict[str, int]:
        """Join the window's engagements to their searches and write memory and profiles."""
        engaged = tuple(ENGAGEMENT_WEIGHTS)
        arrived = list(self._log.joined_searches(batch.after_ms, batch.until_ms))
        for search in arrived:
            self._remember(search)
        events = list(self._log.events(batch.after_ms, batch.until_ms, engaged))
        unknown = {e.search_id for e in events if e.search_id not in self._searches}
        for search in self._log.searches_by_id(unknown).values():
            self._remember(search)
        joined: list[tuple[LoggedSearch, LoggedEvent]] = []
        for event in events:  # the search came first: joined as the event arrives
            known = self._searches.get(event.search_id)
            if known is not None and known.ingested_at <= event.ingested_at:
                joined.append((known, event))
        earlier = self._log.events_of([s.search_id for s in arrived], batch.until_ms, engaged)
        for search in arrived:  # the events came first: joined as the search arrives
            for event in earlier.get(search.search_id, []):
                if event.ingested_at < search.ingested_at:
                    joined.append((search, event))
        # One order whatever the batches: when the join happened (the later arrival), then the
        # event's key. The per-user caps depend on it, and a replay must meet them the same way.
        joined.sort(key=lambda pair: (max(pair[0].ingested_at, pair[1].ingested_at), pair[1].key))
        counts = self._write(batch.batch, from_millis(batch.until_ms), joined, report)
        counts["events"] = len(joined)
        report.events += len(joined)
        return counts

    def _remember(self, search: LoggedSearch) -> None:
        self._searches[search.search_id] = search
        self._searches.move_to_end(search.search_id)
        while len(self._searches) > CACHED_SEARCHES:
            self._searches.popitem(last=False)

    def _write(
        self,
        number: int,
        log_time: datetime,
        joined: list[tuple[LoggedSearch, LoggedEvent]],
        report: LearnerReport,
    ) -> dict[str, int]:
        """Rules, caps, then the memory batch and the profiles (memory first: a profile holding
        this batch means its memory is complete)."""
        profiles = self._profiles.read(self.rules.profile_users(joined))
        fresh = {u: p for u, p in profiles.items() if p.batch < number}
        vectors = entity_vectors(self._client, self.settings, self.rules.engaged_entities(joined))
        lessons = self.rules.engagements(joined, profiles, vectors=vectors)
        memory = MemoryBatch()
        for update in lessons.memory:
            memory.add(update)
        unshown, capped = lessons.unshown, lessons.capped
        written = apply_memory(self._client, self.settings, memory, number, log_time)
        if written.applied:  # serving processes see it now, not at the next refresh
            self._client.indices.refresh(index=self.settings.index_name("catalog"))
        if written.failed:
            raise LtrrError(
                f"{len(written.failed)} memory updates failed (first {written.failed[0]}); the "
                "batch will be applied again"
            )
        for profile in fresh.values():
            profile.batch = number
        self._profiles.write(
            p for u, p in profiles.items() if u in fresh and (p.counts or p.ledger)
        )
        report.memory_entities += written.applied
        report.unshown += unshown
        report.capped += capped
        report.missing_entities += len(written.missing)
        return {
            "memory_entities": written.applied,
            "unshown": unshown,
            "capped": capped,
            "missing_entities": len(written.missing),
        }

    # -- the policy ------------------------------------------------------------------------------

    def _settle(self, until: int, report: LearnerReport) -> bool:
        """Teach the policy the searches of one window after its cursor, up to `until`; True
        when the cursor has reached `until`."""
        if self._policy_ms >= until:
            return True
        end = self._window(self._log.queries, self._policy_ms, until)
        if end is None:
            self._policy_ms = until
            return True
        records = list(self._log.searches(self._policy_ms, end, SETTLE_FIELDS))
        window = int(self.rules.reward_window_s * 1000)
        events = self._log.events_of([str(r.get("search_id")) for _, r in records], end + window)
        for arrived, raw in records:
            report.settled += 1
            record = search_record(raw)
            if record is None:
                report.unreadable += 1
                continue
            outcome = self.rules.outcome(record, arrived, events.get(record.search_id, []))
            if outcome is None:
                report.not_shown += 1
                continue
            before = self.policy.updates
            try:
                if self._rebuilding and isinstance(self.policy, PlanBandit):
                    found = self.policy.logged_round(record.context, record.decision, outcome)
                    if found is not None:
                        self._validation.append((record.context, found))
                        self._validated += 1
                self.policy.learn(record.context, record.decision, outcome)
            except Exception:
                log.exception("the policy failed to learn from %s", record.search_id)
                continue
            if self.policy.updates > before:  # a failed strategy, another's plan: no lesson
                report.policy_lessons += 1
                self._policy_dirty = True
        self._policy_ms = end
        return end >= until

    def publish_policy(self, reason: str) -> None:
        """Store the policy as a new version, promoted (it continues the live one: its own
        online learning), with the log position it has learned up to; prune old versions.
        If an operator moved the live pointer meanwhile, reload from there instead."""
        with self._lock:
            if self._policy_dirty:
                self._publish(reason)

    def _publish(self, reason: str) -> None:
        name = self.config.policy_name
        pointer = self._models.pointer("policy", name)
        live = None if pointer is None else pointer.version
        if live != self._live_policy:
            log.warning(
                "the live policy moved to v%s (not by this learner); continuing from it", live
            )
            self._load_policy()
            return
        record = self._models.publish(
            "policy",
            name,
            self.policy.to_bytes(),
            status="promoted",
            parent=live,
            trained_on=self._trained_on(),
            metrics={"updates": self.policy.updates},
            reason=reason,
        )
        self.policy.version = record.version
        self._live_policy = record.version
        self._policy_dirty = False
        self._published_at = time.monotonic()
        self._models.prune("policy", name, self.config.keep_versions)

    def _trained_on(self) -> dict[str, Any]:
        return {
            "settle_ms": self._policy_ms,
            "updates": self.policy.updates,
            "log": self.settings.index_name("ubi_queries"),
        }
