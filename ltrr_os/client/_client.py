"""LTRRClient: query -> understanding -> policy -> one _msearch/template -> union -> rerank ->
response; feedback -> durable log -> memory, profiles and policy."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError
from pydantic import ValidationError

from .._errors import QueryError
from ..catalog import catalog_schema, load_lexicon
from ..config import LtrrSettings
from ..embedding import Encoder, load_encoder
from ..feedback import (
    CandidateList,
    FeedbackEvent,
    PendingSearches,
    SearchRecord,
    Spool,
    SpoolRecord,
    UserProfiles,
    ubi_event,
    ubi_query,
)
from ..memory import MemoryUpdate, remember
from ..opensearch import connect, opensearch_error
from ..policy import (
    Decision,
    DecisionContext,
    Outcome,
    Policy,
    RulePolicy,
    StrategyOption,
    TimeContext,
    load_policy,
    new_default_policy,
)
from ..ranking import (
    FeatureExtractor,
    FeatureMatrix,
    FusedRanker,
    LambdaMARTRanker,
    Ranker,
    RankerWatch,
    union_candidates,
)
from ..strategies import StrategyContext, retrieve, strategies
from ..understanding import understand
from ._models import (
    FeedbackReceipt,
    FeedbackRejection,
    SearchContext,
    SearchResponse,
    SearchResult,
    Understanding,
)

log = logging.getLogger(__name__)
PROFILES_FILE = "user-profiles.json"


class LTRRClient:
    """Searches with learned retrieval and learns from feedback. Safe to share between threads.

    `policy` defaults to the newest saved bandit in `settings.model_dir` (a new one if none);
    if a decision fails, the hand-written rule policy decides instead. `ranker` defaults to the
    newest saved LambdaMART model (the fused ranker while there is none), and a newer saved one
    replaces it within `settings.ranker_reload_s`; an explicit `ranker` is never replaced."""

    def __init__(
        self,
        settings: LtrrSettings,
        *,
        policy: Policy | None = None,
        ranker: Ranker | None = None,
        encoder: Encoder | None = None,
        opensearch: OpenSearch | None = None,
        learn_online: bool = True,
    ) -> None:
        self.settings = settings
        self._os = opensearch or connect(settings)
        try:
            schema = catalog_schema(self._os, settings)
            self._lexicon = load_lexicon(self._os, settings)
        except TransportError as exc:
            raise opensearch_error(exc, settings.opensearch_url) from None
        self._strategy_context = StrategyContext(
            settings=settings,
            schema=schema,
            encoder=encoder or load_encoder(),
            timeout_ms=settings.search_timeout_ms,
            max_query_chars=settings.max_query_chars,
        )
        # Attribute slots (genre, era, mood...) describe taste; names (artist) do not generalise.
        self._slot_fields = {s: f for s, f in schema.slots.items() if f in schema.keyword_fields}
        self.policy = policy or load_policy(settings.model_dir) or new_default_policy()
        self._fallback = RulePolicy()
        self._features = FeatureExtractor(schema)
        self._fused = FusedRanker()
        self._ranker_watch = (
            RankerWatch(settings.model_dir, self._features, settings.ranker_reload_s)
            if ranker is None
            else None
        )
        self.ranker: Ranker = ranker or self._fused
        self._ranker_lock = threading.Lock()
        self._refresh_ranker()
        self._learn_online = learn_online
        self._profiles = UserProfiles.load(settings.model_dir / PROFILES_FILE)
        self._pending = PendingSearches()
        self._seen_events: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._spool = Spool(settings.spool_dir)
        self._spool.deliver(self._os)
        self._spool.start_delivery(lambda: self._os)
        self._dirty = False
        # Pay one-off costs (tagger index, encoder session) now, not in the first search.
        understand("warm up", self._lexicon)
        self._strategy_context.encoder.encode_one("warm up")

    # -- search ------------------------------------------------------------------------------

    def search(
        self, query: str, context: SearchContext | None = None, limit: int = 10
    ) -> SearchResponse:
        """Understand, decide, retrieve in one round trip, union, rank, log; then respond."""
        started = time.perf_counter()
        context = context or SearchContext()
        if not isinstance(context, SearchContext):
            raise QueryError(f"context must be a SearchContext, not {type(context).__name__}")
        text = self._check(query, limit)
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        understood = understand(text, self._lexicon)
        timings["understand"] = _since(clock)
        clock = time.perf_counter()
        moment = context.timestamp or datetime.now(UTC)
        decision_context = DecisionContext(
            query=understood,
            user=self._profiles.get(context.user_id),
            time=TimeContext.at(moment),
            options=[
                StrategyOption(
                    strategy=name, source_type=s.source_type, applicable=s.applicable(understood)
                )
                for name, s in strategies().items()
            ],
            budget=self.settings.candidate_budget,
        )
        decision = self._decide(decision_context)
        timings["decide"] = _since(clock)
        search_id = uuid.uuid4().hex
        clock = time.perf_counter()
        strategy_context = replace(self._strategy_context, exploration_seed=int(search_id[:7], 16))
        retrieval = retrieve(self._os, decision.plan, understood, strategy_context)
        timings["retrieve"] = _since(clock)
        timings["round_trip"] = retrieval.round_trip_ms
        timings["opensearch"] = float(
            max((r.took_ms for r in retrieval.results.values()), default=0)
        )
        clock = time.perf_counter()
        union = union_candidates(
            {
                name: [(c.id, c.score, c.source) for c in result.candidates]
                for name, result in retrieval.results.items()
            }
        )
        features = self._features.extract(understood, union, decision_context.user)
        ranker, scores = self._rank(features)
        order = sorted(range(len(union)), key=lambda i: (-scores[i], union[i].id))[:limit]
        results = [
            SearchResult(
                id=union[i].id,
                rank=rank,
                score=round(scores[i], 6),
                entity_type=union[i].source.get("entity_type"),
                title=union[i].source.get("title"),
                source=union[i].source,
                provenance=union[i].provenance,
            )
            for rank, i in enumerate(order, start=1)
        ]
        timings["rank"] = _since(clock)
        clock = time.perf_counter()
        record = SearchRecord(
            search_id=search_id,
            text=text,
            timestamp=moment,
            user_id=context.user_id,
            session_id=context.session_id,
            context=decision_context,
            decision=decision,
            candidates={
                name: CandidateList(
                    ids=[c.id for c in r.candidates], failed=r.error is not None or r.timed_out
                )
                for name, r in retrieval.results.items()
                if not r.skipped
            },
            results=[r.id for r in results],
            attributes={r.id: self._attributes(r.source) for r in results},
            ranker=ranker,
            feature_version=features.schema.version,
            features=features.logged(order),
        )
        self._spool.append(
            [
                SpoolRecord(
                    index=self.settings.index_name("ubi_queries"),
                    doc_id=search_id,
                    document=ubi_query(self.settings, record),
                )
            ]
        )
        self._learn(self._pending.add(record))
        timings["log"] = _since(clock)
        timings["total"] = _since(started)
        return SearchResponse(
            search_id=search_id,
            query=text,
            results=results,
            candidates=len(union),
            decision=decision,
            understanding=Understanding(features=understood.features, readings=understood.readings),
            partial=retrieval.partial,
            errors={
                n: r.error or "timed out"
                for n, r in retrieval.results.items()
                if r.error or r.timed_out
            },
            ranker=ranker,
            timings_ms=timings,
        )

    def _check(self, query: str, limit: int) -> str:
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
        return text

    def _refresh_ranker(self) -> None:
        """Swap in a newer saved ranker, if one appeared (looked for at most every
        `ranker_reload_s`); searches under way keep the one they started with."""
        if self._ranker_watch is None:
            return
        newer = self._ranker_watch.newer(self._ranker_version())
        if newer is None:
            return
        with self._ranker_lock:
            if newer.version > (self._ranker_version() or 0):
                log.info("ranker %s replaces %s", newer.name, self.ranker.name)
                self.ranker = newer

    def _ranker_version(self) -> int | None:
        return self.ranker.version if isinstance(self.ranker, LambdaMARTRanker) else None

    def _rank(self, features: FeatureMatrix) -> tuple[str, list[float]]:
        """Scores from the current ranker, or the fused ranker's if it fails; and the name of
        the ranker that scored."""
        self._refresh_ranker()
        ranker = self.ranker
        try:
            return ranker.name, ranker.score_features(features).tolist()
        except Exception:
            log.exception("ranker %s failed; the fused ranker ranks instead", ranker.name)
            return self._fused.name, self._fused.score_features(features).tolist()

    def _decide(self, context: DecisionContext) -> Decision:
        """The policy's plan; the rule policy's when it fails or plans more candidates than the
        budget (any policy may be plugged in; the budget holds for all)."""
        try:
            decision = self.policy.decide(context)
        except Exception:
            log.exception("policy %s failed to decide; the rule policy decides", self.policy.name)
            return self._fallback.decide(context)
        if decision.candidate_cost > context.budget:
            log.warning(
                "policy %s planned %d candidates, over the budget of %d; the rule policy decides",
                self.policy.name,
                decision.candidate_cost,
                context.budget,
            )
            return self._fallback.decide(context)
        return decision

    def _attributes(self, source: Mapping[str, Any]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for slot, field in self._slot_fields.items():
            value = source.get(field)
            if value:
                found[slot] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        return found

    # -- feedback ----------------------------------------------------------------------------

    def feedback(self, events: Sequence[FeedbackEvent | Mapping[str, Any]]) -> FeedbackReceipt:
        """Log events durably, then learn: memory, user profiles, and the policy once a search
        settles. Unknown search ids and invalid events are rejected; repeats are ignored.

        Raises OpenSearchUnavailableError when a search id must be looked up in OpenSearch and
        cannot be, and LtrrError when the spool cannot store the events: then nothing of the
        batch was accepted, and sending it again is safe."""
        if isinstance(events, str | bytes | Mapping) or not isinstance(events, Sequence):
            raise QueryError(f"events must be a list of events, not {type(events).__name__}")
        receipt = FeedbackReceipt()
        accepted: list[tuple[FeedbackEvent, SearchRecord, bool]] = []
        try:
            self._accept(events, receipt, accepted)
            if accepted:
                self._spool.append(
                    [
                        SpoolRecord(
                            index=self.settings.index_name("ubi_events"),
                            doc_id=event.key,
                            document=ubi_event(event),
                        )
                        for event, _, _ in accepted
                    ]
                )
        except BaseException:
            self._forget_seen([event.key for event, _, _ in accepted])
            raise
        if accepted:
            receipt.accepted = len(accepted)
            receipt.memory_updates = self._learn_from_events(accepted)
        receipt.settled_searches = self.settle()
        return receipt

    def _accept(
        self,
        events: Sequence[FeedbackEvent | Mapping[str, Any]],
        receipt: FeedbackReceipt,
        accepted: list[tuple[FeedbackEvent, SearchRecord, bool]],
    ) -> None:
        """Validate the events; the new ones go to `accepted` (their keys marked seen), the rest
        to the receipt as rejections or duplicates."""
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
            found = self._find_search(event.search_id)
            if found is None:
                receipt.rejected.append(
                    FeedbackRejection(index=index, reason=f"unknown search id {event.search_id}")
                )
                continue
            if not self._first_time(event.key):
                receipt.duplicates += 1
                continue
            accepted.append((event, *found))

    def _first_time(self, key: str) -> bool:
        with self._seen_lock:
            if key in self._seen_events:
                return False
            self._seen_events[key] = None
            while len(self._seen_events) > 1_000_000:
                self._seen_events.popitem(last=False)
            return True

    def _forget_seen(self, keys: list[str]) -> None:
        """Undo `_first_time` for events that were not stored after all, so a retry stores them."""
        with self._seen_lock:
            for key in keys:
                self._seen_events.pop(key, None)

    def _find_search(self, search_id: str) -> tuple[SearchRecord, bool] | None:
        found = self._pending.find(search_id)
        if found is not None:
            return found
        try:
            stored = self._os.get(
                index=self.settings.index_name("ubi_queries"), id=search_id, ignore=404
            )
        except TransportError as exc:
            raise opensearch_error(exc, self.settings.opensearch_url) from None
        if not stored.get("found"):
            return None
        record = SearchRecord.model_validate(stored["_source"]["ltrr"])
        self._pending.remember_settled(record)
        return record, False

    def _learn_from_events(self, accepted: list[tuple[FeedbackEvent, SearchRecord, bool]]) -> int:
        updates = []
        for event, record, pending in accepted:
            if event.weight <= 0:
                continue
            updates.append(
                MemoryUpdate(
                    entity_id=event.object_id,
                    query=record.text,
                    weight=event.weight,
                    timestamp=event.timestamp,
                )
            )
            user = event.user_id or record.user_id
            if user is not None:
                self._profiles.engage(user, record.attributes.get(event.object_id, {}))
            if pending:
                self._pending.engage(record.search_id, event.object_id, event.weight)
        if not updates:
            return 0
        applied, _ = remember(self._os, self.settings, updates)
        return applied

    def settle(self, search_id: str | None = None, force: bool = False) -> int:
        """Let the policy learn from searches whose reward window has passed (or the one named,
        or all with force=True); returns how many settled."""
        window = 0.0 if force or search_id else self.settings.reward_window_s
        settled = self._pending.settle(window, search_id)
        self._learn(settled)
        return len(settled)

    def _learn(self, settled: list[tuple[SearchRecord, Outcome]]) -> None:
        if not self._learn_online:
            return
        for record, outcome in settled:
            try:
                self.policy.learn(record.context, record.decision, outcome)
                self._dirty = True
            except Exception:
                log.exception(
                    "policy %s failed to learn from %s", self.policy.name, record.search_id
                )

    # -- lifecycle ---------------------------------------------------------------------------

    def save(self) -> None:
        """Persist the policy (a new version, if it learned anything) and the user profiles."""
        if self._dirty:
            self.policy.save(self.settings.model_dir)
            self._dirty = False
        self._profiles.save(self.settings.model_dir / PROFILES_FILE)

    def flush(self) -> int:
        """Deliver what the spool holds now; returns how many records are still pending."""
        return self._spool.deliver(self._os).pending

    def close(self) -> None:
        """Save, deliver the spool and stop its thread. Pending searches stay unsettled."""
        self.save()
        self._spool.close(self._os)

    def __enter__(self) -> LTRRClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncLTRRClient:
    """The same client for asyncio code: each call runs in a worker thread."""

    def __init__(self, settings: LtrrSettings, **options: Any) -> None:
        self.sync = LTRRClient(settings, **options)

    async def search(
        self, query: str, context: SearchContext | None = None, limit: int = 10
    ) -> SearchResponse:
        return await asyncio.to_thread(self.sync.search, query, context, limit)

    async def feedback(
        self, events: Sequence[FeedbackEvent | Mapping[str, Any]]
    ) -> FeedbackReceipt:
        return await asyncio.to_thread(self.sync.feedback, events)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)


def _since(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 3)
