"""LTRRClient: query -> understanding -> policy -> one _msearch/template -> union -> rerank ->
response; feedback -> durable spool -> UBI logs, which the learner turns into learned state.

A client is a stateless server: it reads what was learned (the live policy and ranker from the
model index, user profiles, the memory in the catalog) and writes only logs. Any number of them
serve at once. With `learn="embedded"` it also runs the learner in a thread of its own (for one
process: a demo, a notebook); otherwise `ltrr learn` does the learning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError
from pydantic import ValidationError

from .._errors import LtrrError, QueryError
from ..catalog import catalog_schema, load_lexicon
from ..config import LtrrSettings
from ..embedding import Encoder, load_encoder
from ..feedback import (
    FeedbackEvent,
    ProfileCache,
    ProfileStore,
    SpoolRecord,
    claim_spool,
    deliver_unclaimed,
    ubi_event,
    ubi_query,
)
from ..learning import Learner, LearnerConfig, LearnerReport
from ..models import RANKER_NAME, ModelStore, live_ranker
from ..opensearch import connect, opensearch_error
from ..pipeline import SearchPipeline, Served, opensearch_retriever
from ..policy import (
    DEFAULT_POLICY_NAME,
    Policy,
    new_default_policy,
    policy_from_bytes,
)
from ..ranking import (
    Ranker,
)
from ..strategies import StrategyContext
from ._models import (
    FeedbackReceipt,
    FeedbackRejection,
    SearchContext,
    SearchResponse,
    SearchResult,
    Understanding,
)

log = logging.getLogger(__name__)
SEEN_EVENTS = 100_000
"""Event keys remembered to report repeats in a receipt (storage is exactly once anyway)."""
Learning = Literal["external", "embedded"]


class LTRRClient:
    """Searches with learned retrieval and logs feedback. Safe to share between threads.

    The policy and the ranker are the live versions in the model index (a new bandit while no
    policy was ever published; the rule policy when versions exist and none loads; the fused
    ranker while no ranker was promoted), and newly promoted versions replace them within
    `settings.model_reload_s`. An explicit `policy` or `ranker` is never replaced.

    `learn="embedded"` runs the learner in this process (and `settle`, `save` drive it);
    `"external"` (the default) leaves learning to `ltrr learn`."""

    def __init__(
        self,
        settings: LtrrSettings,
        *,
        policy: Policy | None = None,
        ranker: Ranker | None = None,
        encoder: Encoder | None = None,
        opensearch: OpenSearch | None = None,
        learn: Learning = "external",
        learner_config: LearnerConfig | None = None,
    ) -> None:
        if learn not in ("external", "embedded"):
            raise LtrrError(f"learn must be 'external' or 'embedded', not {learn!r}")
        self.settings = settings
        self._os = opensearch or connect(settings)
        try:
            schema = catalog_schema(self._os, settings)
            self._lexicon = load_lexicon(self._os, settings)
        except TransportError as exc:
            raise opensearch_error(exc, settings.opensearch_url) from None
        strategy_context = StrategyContext(
            settings=settings,
            schema=schema,
            encoder=encoder or load_encoder(),
            timeout_ms=settings.search_timeout_ms,
            max_query_chars=settings.max_query_chars,
        )
        self._pipeline = SearchPipeline(
            schema,
            self._lexicon,
            strategy_context,
            opensearch_retriever(self._os),
            budget=settings.candidate_budget,
        )
        self._models = ModelStore(self._os, settings)
        self._profiles = ProfileCache(ProfileStore(self._os, settings), settings.profile_cache_s)
        self._fixed_policy, self._fixed_ranker = policy is not None, ranker is not None
        self.policy: Policy = policy or new_default_policy(self.settings.cost_per_candidate)
        self.ranker: Ranker = ranker or self._pipeline.fused
        self._loaded: dict[str, int | None] = {"policy": None, "ranker": None}
        self._reload_lock = threading.Lock()
        self.reload_models()
        self._seen_events: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._spool = claim_spool(settings.spool_dir)
        self._spool.start_delivery(lambda: self._os)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch_models, name="ltrr-model-watch", daemon=True),
            threading.Thread(
                target=self._deliver_unclaimed, name="ltrr-spool-orphans", daemon=True
            ),
        ]
        self._learner: Learner | None = None
        if learn == "embedded":
            self._learner = Learner(self._os, settings, config=learner_config)
            self._threads.append(
                threading.Thread(target=self._learn, name="ltrr-learner", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        # Pay one-off costs (tagger index, encoder session) now, not in the first search.
        self._pipeline.understand("warm up")
        strategy_context.encoder.encode_one("warm up")

    # -- search ------------------------------------------------------------------------------

    def search(
        self, query: str, context: SearchContext | None = None, limit: int = 10
    ) -> SearchResponse:
        """Understand, decide, retrieve in one round trip, union, rank, log; then respond."""
        started = time.perf_counter()
        text, context = self._check(query, context, limit)
        served = self._pipeline.search(
            text,
            policy=self.policy,
            ranker=self.ranker,
            user=self._profiles.get(context.user_id),
            moment=context.timestamp or datetime.now(UTC),
            limit=limit,
        )
        return self._respond(served, context, self._log_search(served, context), started)

    def _log_search(self, served: Served, context: SearchContext) -> float:
        """Append the search's record to the spool (durable on return); the time it took."""
        clock = time.perf_counter()
        record = served.record(
            user_id=context.user_id,
            session_id=context.session_id,
            slot_fields=self._pipeline.slot_fields,
        )
        self._spool.append(
            [
                SpoolRecord(
                    index=self.settings.index_name("ubi_queries"),
                    doc_id=served.search_id,
                    document=ubi_query(self.settings, record),
                )
            ]
        )
        return _since(clock)

    def _respond(
        self, served: Served, context: SearchContext, log_ms: float, started: float
    ) -> SearchResponse:
        timings = {**served.timings_ms, "log": log_ms, "total": _since(started)}
        retrieval = served.retrieval
        return SearchResponse(
            search_id=served.search_id,
            query=served.text,
            results=[
                SearchResult(
                    id=served.union[i].id,
                    rank=rank,
                    score=round(served.ranking.scores[i], 6),
                    entity_type=served.union[i].source.get("entity_type"),
                    title=served.union[i].source.get("title"),
                    source=served.union[i].source,
                    provenance=served.union[i].provenance,
                )
                for rank, i in enumerate(served.ranking.order, start=1)
            ],
            candidates=len(served.union),
            decision=served.decision,
            understanding=Understanding(
                features=served.query.features, readings=served.query.readings
            ),
            partial=retrieval.partial,
            errors={
                n: r.error or "timed out"
                for n, r in retrieval.results.items()
                if r.error or r.timed_out
            },
            ranker=served.ranking.ranker,
            timings_ms=timings,
        )

    def _check(
        self, query: str, context: SearchContext | None, limit: int
    ) -> tuple[str, SearchContext]:
        """The query as searched (printable, trimmed) and the context, or QueryError."""
        context = context or SearchContext()
        if not isinstance(context, SearchContext):
            raise QueryError(f"context must be a SearchContext, not {type(context).__name__}")
        if not isinstance(query, str):
            raise QueryError(f"query must be a string, not {type(query).__name__}")
        text = "".join(ch if ch.isprintable() else " " for ch in query).strip()
        if not text:
            raise QueryError("query is empty")
        if len(text) > self.settings.max_query_chars:
            raise QueryError(
                f"query is {len(text)} characters long (limit {self.settings.max_query_chars})"
            )
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not (1 <= limit <= self.settings.max_results)
        ):
            raise QueryError(f"limit must be an integer from 1 to {self.settings.max_results}")
        return text, context

    # -- learned state -----------------------------------------------------------------------

    def reload_models(self) -> None:
        """Load the live policy and ranker if they changed since the last look (servers look
        every `model_reload_s`; call it to look now). A version that cannot be loaded is
        reported and the one promoted before it serves."""
        wanted: dict[Any, str] = {}
        if not self._fixed_policy:
            wanted["policy"] = DEFAULT_POLICY_NAME
        if not self._fixed_ranker:
            wanted["ranker"] = RANKER_NAME
        if not wanted:
            return
        with self._reload_lock:
            live = self._models.live_versions(wanted)
            if "policy" in live and live["policy"] != self._loaded["policy"]:
                self.policy = self._live_policy()
                self._loaded["policy"] = live["policy"]
            if "ranker" in live and live["ranker"] != self._loaded["ranker"]:
                self.ranker = (
                    live_ranker(self._models, self._pipeline.features) or self._pipeline.fused
                )
                self._loaded["ranker"] = live["ranker"]
                log.info("ranking with %s", self.ranker.name)

    def _live_policy(self) -> Policy:
        pointer = self._models.pointer("policy", DEFAULT_POLICY_NAME)
        if pointer is None:
            return new_default_policy(self.settings.cost_per_candidate)
        for version in [pointer.version, *pointer.previous]:
            try:
                record, blob = self._models.load("policy", DEFAULT_POLICY_NAME, version)
                policy = policy_from_bytes(blob)
            except (LtrrError, ValueError) as exc:
                log.error("policy v%d cannot serve (%s); trying the one before", version, exc)
                continue
            policy.version = record.version
            log.info("deciding with policy %s v%d", policy.name, policy.version)
            return policy
        log.error("no promoted policy version loads; the rule policy decides")
        return self._pipeline.fallback

    def _watch_models(self) -> None:
        while not self._stop.wait(self.settings.model_reload_s):
            try:
                self.reload_models()
            except LtrrError as exc:
                log.debug("looking for new models failed: %s", exc)
            except Exception:  # the thread must outlive any failure
                log.exception("looking for new models failed")

    def _deliver_unclaimed(self) -> None:
        try:
            if delivered := deliver_unclaimed(self.settings.spool_dir, self._os):
                log.info("delivered %d records left by stopped processes", delivered)
        except Exception:
            log.exception("delivering records left by stopped processes failed")

    # -- feedback ----------------------------------------------------------------------------

    def feedback(self, events: Sequence[FeedbackEvent | Mapping[str, Any]]) -> FeedbackReceipt:
        """Log events durably (on return they survive a crash). Invalid events are rejected
        with a reason; repeats this process has seen are counted, and storage is exactly
        once whatever process they reach. The event's search may be served by any process and
        still on its way: the learner joins them.

        Raises LtrrError when the spool cannot store the events: then nothing of the batch was
        accepted, and sending it again is safe."""
        if isinstance(events, str | bytes | Mapping) or not isinstance(events, Sequence):
            raise QueryError(f"events must be a list of events, not {type(events).__name__}")
        receipt = FeedbackReceipt()
        accepted: list[FeedbackEvent] = []
        for index, raw in enumerate(events):
            try:
                event = raw if isinstance(raw, FeedbackEvent) else FeedbackEvent.model_validate(raw)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                    for e in exc.errors()
                )
                receipt.rejected.append(FeedbackRejection(index=index, reason=problems))
                continue
            if not self._first_time(event.key):
                receipt.duplicates += 1
                continue
            accepted.append(event)
        if accepted:
            try:
                self._spool.append(
                    [
                        SpoolRecord(
                            index=self.settings.index_name("ubi_events"),
                            doc_id=event.key,
                            document=ubi_event(event),
                        )
                        for event in accepted
                    ]
                )
            except BaseException:
                self._forget_seen([event.key for event in accepted])
                raise
        receipt.accepted = len(accepted)
        return receipt

    def _first_time(self, key: str) -> bool:
        with self._seen_lock:
            if key in self._seen_events:
                return False
            self._seen_events[key] = None
            while len(self._seen_events) > SEEN_EVENTS:
                self._seen_events.popitem(last=False)
            return True

    def _forget_seen(self, keys: list[str]) -> None:
        """Undo `_first_time` for events that were not stored after all, so a retry stores them."""
        with self._seen_lock:
            for key in keys:
                self._seen_events.pop(key, None)

    # -- embedded learning -------------------------------------------------------------------

    def _learn(self) -> None:
        assert self._learner is not None
        self._learner.run(self._stop)

    def settle(self, force: bool = False) -> LearnerReport:
        """Embedded learning only: deliver the spool and let the learner catch up with the log
        now (`force`: settle every search without waiting for its reward window); then serve
        what it learned. Returns what the learner did."""
        learner = self._require_learner()
        self.flush()
        if not learner.started:
            learner.start()
        report = learner.catch_up(settle_all=force, lag_s=0.0)
        learner.publish_policy("settled by the client")
        self._os.indices.refresh(index=self.settings.index_name("catalog"))
        self.reload_models()
        return report

    def save(self) -> None:
        """Embedded learning: publish what the policy learned so far (the learner publishes on
        its own every few seconds). Without it, there is nothing to save: servers hold no
        learned state."""
        if self._learner is not None and self._learner.started:
            self._learner.publish_policy("saved by the client")

    def _require_learner(self) -> Learner:
        if self._learner is None:
            raise LtrrError(
                "this client does not learn: run `ltrr learn`, or create the client with "
                "learn='embedded'"
            )
        return self._learner

    # -- lifecycle ---------------------------------------------------------------------------

    def flush(self) -> int:
        """Deliver what the spool holds now; returns how many records are still pending."""
        return self._spool.deliver(self._os).pending

    def close(self) -> None:
        """Stop the threads, deliver the spool, hand the learner's lease back: all within
        `request_timeout_s` (what cannot be delivered by then stays in the spool, for the next
        process that takes its slot)."""
        deadline = time.monotonic() + self.settings.request_timeout_s
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._spool.close(self._os, timeout_s=max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> LTRRClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _since(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 3)
