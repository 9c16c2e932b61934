"""The search pipeline: understand -> decide -> retrieve -> union -> features -> rank -> record.

One implementation, used by `LTRRClient.search`, `ltrr evaluate` and `ltrr simulate`, so that
what is measured is what serves. What differs between them is plugged in, never re-implemented:
the policy and the ranker, who the user is and when, and how an `_msearch/template` round trip
is made (`Retriever`: straight to OpenSearch, or through a cache of responses when a benchmark
asks the same thing many times). The plan's strategies run in one round trip; an expansion
(`related`) runs in a second one, from the first one's best hits, within the search's deadline.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from opensearchpy import OpenSearch

from ..config import CatalogSchema
from ..feedback import CandidateList, SearchRecord
from ..policy import (
    Decision,
    DecisionContext,
    Policy,
    RulePolicy,
    StrategyOption,
    TimeContext,
    UserProfile,
)
from ..ranking import (
    FeatureExtractor,
    FeatureMatrix,
    FusedRanker,
    Ranker,
    UnionCandidate,
    reciprocal_rank_fusion,
)
from ..ranking import union_candidates as merge
from ..strategies import (
    Retrieval,
    Seed,
    Strategy,
    StrategyContext,
    StrategyResult,
    retrieve,
    strategies,
)
from ..strategies._retrieve import Request
from ..understanding import Lexicon, UnderstoodQuery, understand

log = logging.getLogger(__name__)

Retriever = Callable[[Mapping[str, int], UnderstoodQuery, StrategyContext], Retrieval]
"""Runs a plan (strategy -> size) for a query in one `_msearch/template` round trip."""
SEEDS = 5
"""How many of the first round trip's best hits an expansion starts from."""
MIN_EXPANSION_MS = 20
"""An expansion with less of the deadline left than this is not sent (it times out)."""


def opensearch_retriever(client: OpenSearch) -> Retriever:
    """The retriever that serves: every plan is a real round trip."""

    def run(plan: Mapping[str, int], query: UnderstoodQuery, context: StrategyContext) -> Retrieval:
        return retrieve(client, plan, query, context)

    return run


@dataclass(frozen=True)
class Ranking:
    """The union ordered by one ranker: indices into the union, best first, and the scores."""

    ranker: str
    order: list[int]
    scores: list[float]


@dataclass
class Planned:
    """A search up to its round trip: what was understood and decided, and for which context."""

    search_id: str
    text: str
    moment: datetime
    query: UnderstoodQuery
    context: DecisionContext
    decision: Decision
    strategy_context: StrategyContext
    timings_ms: dict[str, float]
    started: float = field(default_factory=time.perf_counter)

    @property
    def request(self) -> Request:
        """What the retriever runs first: the plan's strategies that need no hits to start
        from, for the query, in the strategies' context."""
        registry = strategies()
        first = {s: n for s, n in self.decision.plan.items() if not registry[s].expands}
        return first, self.query, self.strategy_context


@dataclass
class Served:
    """Everything one search produced, stage by stage."""

    search_id: str
    text: str
    moment: datetime
    query: UnderstoodQuery
    context: DecisionContext
    decision: Decision
    retrieval: Retrieval
    union: list[UnionCandidate]
    features: FeatureMatrix
    ranking: Ranking
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def shown(self) -> list[str]:
        return [self.union[i].id for i in self.ranking.order]

    def record(
        self,
        *,
        user_id: str | None,
        session_id: str | None,
        slot_fields: Mapping[str, str],
        with_features: bool = True,
    ) -> SearchRecord:
        """The search as the log keeps it: what the learner and the ranker's training read
        (`with_features=False` leaves out the shown results' feature vectors, for a caller that
        trains from `features` directly)."""
        shown = [self.union[i] for i in self.ranking.order]
        return SearchRecord(
            search_id=self.search_id,
            text=self.text,
            timestamp=self.moment,
            user_id=user_id,
            session_id=session_id,
            context=self.context,
            decision=self.decision,
            candidates={
                name: CandidateList(
                    ids=[c.id for c in r.candidates], failed=r.error is not None or r.timed_out
                )
                for name, r in self.retrieval.results.items()
                if not r.skipped
            },
            results=[c.id for c in shown],
            attributes={c.id: attributes(c.source, slot_fields) for c in shown},
            ranker=self.ranking.ranker,
            feature_version=self.features.schema.version,
            features=self.features.logged(self.ranking.order) if with_features else [],
        )


def attributes(source: Mapping[str, Any], slot_fields: Mapping[str, str]) -> dict[str, list[str]]:
    """The slot values an entity carries (genre, era, mood...): what profiles count."""
    found: dict[str, list[str]] = {}
    for slot, name in slot_fields.items():
        value = source.get(name)
        if value:
            found[slot] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return found


class SearchPipeline:
    """The stages of a search over one catalog; see the module docstring. Thread-safe: it holds
    no state of a search."""

    def __init__(
        self,
        schema: CatalogSchema,
        lexicon: Lexicon,
        context: StrategyContext,
        retriever: Retriever,
        *,
        budget: int,
    ) -> None:
        self.schema = schema
        self.lexicon = lexicon
        self.context = context
        self.retriever = retriever
        self.budget = budget
        self.features = FeatureExtractor(schema)
        self.fused = FusedRanker()
        self.fallback = RulePolicy()
        # Attribute slots (genre, era, mood...) describe taste; names (artist) do not generalise.
        self.slot_fields = {s: f for s, f in schema.slots.items() if f in schema.keyword_fields}

    def understand(self, text: str) -> UnderstoodQuery:
        return understand(text, self.lexicon)

    def decide(
        self,
        policy: Policy,
        query: UnderstoodQuery,
        user: UserProfile,
        moment: datetime,
        budget: int | None = None,
        strategy_context: StrategyContext | None = None,
    ) -> tuple[DecisionContext, Decision]:
        """The policy's plan; the rule policy's when it fails or plans more candidates than the
        budget (any policy may be plugged in; the budget holds for all)."""
        where = strategy_context or self.context
        context = DecisionContext(
            query=query,
            user=user,
            time=TimeContext.at(moment),
            options=[
                StrategyOption(
                    strategy=name,
                    source_type=s.source_type,
                    applicable=s.applicable(query, where),
                )
                for name, s in strategies().items()
            ],
            budget=self.budget if budget is None else budget,
        )
        try:
            decision = policy.decide(context)
        except Exception:
            log.exception("policy %s failed to decide; the rule policy decides", policy.name)
            return context, self.fallback.decide(context)
        if decision.candidate_cost > context.budget:
            log.warning(
                "policy %s planned %d candidates, over the budget of %d; the rule policy decides",
                policy.name,
                decision.candidate_cost,
                context.budget,
            )
            return context, self.fallback.decide(context)
        return context, decision

    def rank(
        self, ranker: Ranker, features: FeatureMatrix, union: Sequence[UnionCandidate], limit: int
    ) -> Ranking:
        """The union ordered by the ranker (ties by id), or by the fused score if it fails."""
        try:
            name, scores = ranker.name, ranker.score_features(features).tolist()
        except Exception:
            log.exception("ranker %s failed; the fused ranker ranks instead", ranker.name)
            name, scores = self.fused.name, self.fused.score_features(features).tolist()
        order = sorted(range(len(union)), key=lambda i: (-scores[i], union[i].id))[:limit]
        return Ranking(name, order, scores)

    def plan(
        self,
        text: str,
        *,
        policy: Policy,
        user: UserProfile,
        moment: datetime,
        search_id: str | None = None,
        exploration_seed: int | None = None,
        memory_namespace: str = "",
        budget: int | None = None,
    ) -> Planned:
        """The stages before the round trip: understand and decide (`text` already checked
        against the limits); `budget` overrides the serving budget (an evaluation that draws
        every strategy in full)."""
        started = clock = time.perf_counter()
        query = self.understand(text)
        understood = _since(clock)
        clock = time.perf_counter()
        search_id = search_id or uuid.uuid4().hex
        seed = int(search_id[:7], 16) if exploration_seed is None else exploration_seed
        strategy_context = replace(
            self.context,
            exploration_seed=seed,
            now=moment,
            memory_namespace=memory_namespace,
            user_vector=tuple(user.taste) if user.taste else None,
        )
        context, decision = self.decide(policy, query, user, moment, budget, strategy_context)
        return Planned(
            search_id=search_id,
            text=text,
            moment=moment,
            query=query,
            context=context,
            decision=decision,
            strategy_context=strategy_context,
            timings_ms={"understand": understood, "decide": _since(clock)},
            started=started,
        )

    def expansion(self, planned: Planned, first: Retrieval) -> Request | None:
        """The second round trip, for the plan's expansion strategies (related): from the
        first round trip's best hits, within what is left of the deadline. None when there is
        nothing to send: then `first` holds their results (skipped without hits to start from,
        timed out when the deadline is too near)."""
        registry = strategies()
        plan = {s: n for s, n in planned.decision.plan.items() if registry[s].expands}
        if not plan:
            return None
        context = planned.strategy_context
        deadline = context.settings.expansion_deadline_ms
        left_ms = (context.timeout_ms if deadline is None else deadline) - _since(planned.started)
        seeds = _seeds(first, registry)
        if not seeds or left_ms < MIN_EXPANSION_MS:
            for name, size in plan.items():
                first.results[name] = StrategyResult(
                    strategy=name, size=size, skipped=not seeds, timed_out=bool(seeds)
                )
            return None
        timeout = min(context.timeout_ms, int(left_ms))
        return plan, planned.query, replace(context, seeds=seeds, timeout_ms=timeout)

    @staticmethod
    def combined(first: Retrieval, second: Retrieval) -> Retrieval:
        """Both round trips' results, and their time together."""
        return Retrieval(
            results={**first.results, **second.results},
            round_trip_ms=first.round_trip_ms + second.round_trip_ms,
        )

    def finish(
        self, planned: Planned, retrieval: Retrieval, *, ranker: Ranker, limit: int
    ) -> Served:
        """The stages after the round trip: union, features, rank."""
        timings = {
            **planned.timings_ms,
            "round_trip": retrieval.round_trip_ms,
            "opensearch": float(max((r.took_ms for r in retrieval.results.values()), default=0)),
        }
        clock = time.perf_counter()
        results = retrieval.results
        union = merge(
            {
                name: [(c.id, c.score, c.source) for c in r.candidates]
                for name, r in results.items()
            },
            {name: {c.id: c.via for c in r.candidates if c.via} for name, r in results.items()},
        )
        features = self.features.extract(planned.query, union, planned.context.user)
        ranking = self.rank(ranker, features, union, limit)
        timings["rank"] = _since(clock)
        return Served(
            search_id=planned.search_id,
            text=planned.text,
            moment=planned.moment,
            query=planned.query,
            context=planned.context,
            decision=planned.decision,
            retrieval=retrieval,
            union=union,
            features=features,
            ranking=ranking,
            timings_ms=timings,
        )

    def search(
        self,
        text: str,
        *,
        policy: Policy,
        ranker: Ranker,
        user: UserProfile,
        moment: datetime,
        limit: int,
        search_id: str | None = None,
        exploration_seed: int | None = None,
        memory_namespace: str = "",
        budget: int | None = None,
    ) -> Served:
        """Every stage for one search, the round trip through this pipeline's retriever."""
        planned = self.plan(
            text,
            policy=policy,
            user=user,
            moment=moment,
            search_id=search_id,
            exploration_seed=exploration_seed,
            memory_namespace=memory_namespace,
            budget=budget,
        )
        clock = time.perf_counter()
        retrieval = self.retriever(*planned.request)
        if (second := self.expansion(planned, retrieval)) is not None:
            retrieval = self.combined(retrieval, self.retriever(*second))
        planned.timings_ms["retrieve"] = _since(clock)
        return self.finish(planned, retrieval, ranker=ranker, limit=limit)


def _seeds(first: Retrieval, registry: Mapping[str, Strategy]) -> tuple[Seed, ...]:
    """The first round trip's best hits by reciprocal rank fusion (exploration's random samples
    left out), each weighted by its fused score relative to the best."""
    lists = {
        name: [c.id for c in result.candidates]
        for name, result in first.results.items()
        if registry[name].source_type != "exploration" and not registry[name].expands
    }
    fused = reciprocal_rank_fusion(lists)
    best = sorted(fused, key=lambda item: (-fused[item], item))[:SEEDS]
    sources = {c.id: c.source for r in first.results.values() for c in r.candidates}
    top = fused[best[0]] if best else 1.0
    return tuple(Seed(item, sources[item], round(fused[item] / top, 4)) for item in best)


def _since(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 3)
