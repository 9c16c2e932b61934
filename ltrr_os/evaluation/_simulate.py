"""`ltrr simulate`: an online benchmark on the real catalog, every policy side by side.

Every policy faces the same stream of simulated searches (same seed) on the same node, and the
same simulated users (common random numbers: a user facing the same results behaves the same).
Before the stream starts, every strategy runs once per distinct query text at the largest size
any policy may draw, in one `_msearch/template`; a policy's plan is then served by the top of
each list it chose, which is what a smaller request returns (strategies rank deterministically,
ties by id). Lists are kept for the whole run, except the memory strategy's, fetched again once
an engagement changed the memory of its query. (An update also decays the entity's scores for
other queries; their lists see it when their own memory changes.) The exploration strategy is
seeded per query text: a query explores the same long tail throughout a run.

Reproducibility: the same seed gives the same stream and the same user behaviour. Figures also
depend on the catalog's BM25 statistics, which count the old versions of entities whose memory
changed until OpenSearch merges them away (it retains soft deletes for a while), so two runs on
the same catalog differ slightly. Latency is measured for real: every
`latency_every` searches, each policy's own plan runs as its own `_msearch/template`.

The Q2E memory is shared infrastructure: it learns from the engagements of the system under test
(the first learned policy, `ltrr` by default) and every policy reads the same memory. Baselines
thus benefit from what LTR&R's traffic taught the memory, which makes the comparison conservative.
The system under test also ranks with LambdaMART, retrained every `ranker_every` searches on the
results it showed and what the users did with them, as `ltrr train-ranker` does from the logs;
the other policies rank with the fused score.
"""

from __future__ import annotations

import math
import platform
import random
import statistics
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import metadata
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from pydantic import BaseModel, Field

from .. import __version__
from .._errors import LtrrError
from ..feedback import CandidateList, Profile
from ..learning import outcome_of
from ..memory import MemoryBatch, MemoryUpdate, apply_memory
from ..policy import (
    ENGAGEMENT_WEIGHTS,
    SIZE_LEVELS,
    Decision,
    DecisionContext,
    FixedPlanPolicy,
    PerStrategyBandit,
    PlanBandit,
    PlanBanditConfig,
    Policy,
    RulePolicy,
    SingleStrategyPolicy,
    StrategyChoice,
    StrategyOption,
    TimeContext,
)
from ..policy import BanditConfig as PerStrategyConfig
from ..ranking import (
    GRADES,
    FeatureExtractor,
    FusedRanker,
    LambdaMARTRanker,
    LoggedSearches,
    Matrix,
    Ranker,
    TrainConfig,
    fit_ranker,
    union_candidates,
)
from ..strategies import Retrieval, Strategy, StrategyContext, retrieve, strategies
from ..understanding import Lexicon, UnderstoodQuery, understand
from ._ope import LoggedRound, OffPolicyEstimate, estimate
from ._world import Engagement, SimulatedSearch, World

MAX_SIZE = max(SIZE_LEVELS)
SHOWN = 10
COST_PER_CANDIDATE = 0.002
ORACLE = "oracle"
CURVE_BLOCK = 1000
FETCH_TIMEOUT_MS = 30_000
FETCH_ATTEMPTS = 3
LEARNED = ("ltrr", "ltrr-per-strategy")
Hit = tuple[str, float, dict[str, Any]]
Plan = tuple[tuple[str, int], ...]


class PolicyMetrics(BaseModel):
    success_at_10: float
    ndcg_at_10: float
    candidate_recall: float
    candidates_per_query: float
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    opensearch_ms_p50: float | None
    cumulative_regret: float


class CurvePoint(BaseModel):
    """One block of consecutive searches."""

    searches: int = Field(description="searches up to the end of the block")
    success_at_10: float
    candidate_recall: float
    candidates_per_query: float


class PolicySummary(BaseModel):
    whole_run: PolicyMetrics
    last_20_percent: PolicyMetrics
    learning_curve: list[CurvePoint] = Field(default_factory=list)
    explored_share: float = 0.0
    ranker: str = "fused"


class SimulationSummary(BaseModel):
    parameters: dict[str, Any]
    versions: dict[str, str]
    policies: dict[str, PolicySummary]
    off_policy: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rankers_trained: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Round:
    success: bool
    ndcg: float
    recall: bool
    candidates: int
    regret: float = 0.0
    explored: bool = False
    latency_ms: float | None = None
    opensearch_ms: float | None = None


@dataclass(frozen=True)
class Served:
    """What serving one search with one policy produced."""

    round: Round
    engaged: dict[str, float]
    context: DecisionContext
    decision: Decision
    decide_ms: float


@dataclass(frozen=True)
class Logged:
    """A decision of the system under test as its logs hold it, with the rewards it earned."""

    context: DecisionContext
    decision: Decision
    success: float
    recall: float


@dataclass(frozen=True)
class _Group:
    """The results one search showed and the user examined, as a training group."""

    features: Matrix
    labels: list[int]
    positions: list[int]
    search_id: str
    timestamp: datetime


@dataclass
class RankerTraining:
    """The shown results of the newest `window` searches with their labels and positions, and
    the LambdaMART models trained on them."""

    extractor: FeatureExtractor
    every: int
    window: int = 10_000
    groups: deque[_Group] = field(default_factory=deque)
    reports: list[dict[str, Any]] = field(default_factory=list)

    def add(self, group: _Group) -> None:
        self.groups.append(group)
        if len(self.groups) > self.window:
            self.groups.popleft()

    def train(self, seed: int) -> LambdaMARTRanker | None:
        """A model on the groups so far, or None while too few searches had engagement."""
        data = LoggedSearches(
            schema=self.extractor.schema,
            features=np.vstack([g.features for g in self.groups]),
            labels=np.asarray([x for g in self.groups for x in g.labels], dtype=np.int32),
            positions=np.asarray([p for g in self.groups for p in g.positions], dtype=np.int32),
            sizes=[len(g.labels) for g in self.groups],
            search_ids=[g.search_id for g in self.groups],
            timestamps=[g.timestamp for g in self.groups],
        )
        try:
            booster, report = fit_ranker(data, TrainConfig(seed=seed), logged=len(self.groups))
        except LtrrError:
            return None
        report = report.model_copy(update={"version": len(self.reports) + 1})
        self.reports.append(
            {
                "version": report.version,
                "searches": report.searches,
                "rows": report.rows,
                "seconds": report.training_seconds,
                "validation_ndcg_at_10": {
                    name: values.get("ndcg@10") for name, values in report.validation.items()
                },
            }
        )
        return LambdaMARTRanker(booster, self.extractor, report)


@dataclass
class PolicyRun:
    """One policy under test, with its own user profiles and ranker."""

    name: str
    policy: Policy | None
    learns: bool
    ranker: Ranker = field(default_factory=FusedRanker)
    profiles: dict[str, Profile] = field(default_factory=dict)

    def profile(self, user_id: str) -> Profile:
        return self.profiles.setdefault(user_id, Profile(user_id=user_id))

    rounds: list[Round] = field(default_factory=list)
    training: RankerTraining | None = None
    shown: dict[str, tuple[int, Plan, list[str], bool]] = field(default_factory=dict)
    """Per query text: (lists version, plan, shown, recall) of a fixed ranker's last serving,
    reused while neither the lists nor the plan change."""


def policy_names() -> list[str]:
    """Every policy `ltrr simulate --policies` knows, in report order."""
    return [*strategies(), "all", "rule", *LEARNED, ORACLE]


def make_policy(name: str, seed: int) -> tuple[Policy | None, bool]:
    """A policy by name and whether it learns; the oracle has no policy (it knows the answer)."""
    if name in strategies():
        return SingleStrategyPolicy(name, MAX_SIZE), False
    if name == "all":
        return FixedPlanPolicy({"*": MAX_SIZE}, name="all"), False
    if name == "rule":
        return RulePolicy(), False
    if name == "ltrr":
        return PlanBandit(PlanBanditConfig(name=name, exploration="squarecb", seed=seed)), True
    if name == "ltrr-per-strategy":
        config = PerStrategyConfig(name=name, exploration="squarecb", seed=seed)
        return PerStrategyBandit(config), True
    if name == ORACLE:
        return None, False
    raise LtrrError(f"unknown policy {name!r}; known: {', '.join(policy_names())}")


def _ndcg(shown: Sequence[str], wanted: frozenset[str]) -> float:
    gains = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(shown, 1) if item in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), SHOWN) + 1))
    return gains / ideal if ideal else 0.0


def _oracle_plan(lists: Mapping[str, Sequence[Hit]], wanted: frozenset[str]) -> dict[str, int]:
    """The cheapest single strategy and size level that retrieves a wanted item (or nothing)."""
    best: tuple[int, str] | None = None
    for name, hits in lists.items():
        rank = next((r for r, hit in enumerate(hits, start=1) if hit[0] in wanted), None)
        if rank is not None:
            level = min(size for size in SIZE_LEVELS if size >= rank)
            best = min(best or (level, name), (level, name))
    return {} if best is None else {best[1]: best[0]}


def _reward(round_: Round) -> float:
    return float(round_.recall) - COST_PER_CANDIDATE * round_.candidates


class _RetrievalCache:
    """Full-size strategy lists per query text, each text with a version that changes when its
    memory list does."""

    def __init__(self, client: OpenSearch, context: StrategyContext) -> None:
        self._client = client
        self._context = replace(context, timeout_ms=max(context.timeout_ms, FETCH_TIMEOUT_MS))
        self._memory_strategies = {
            name for name, s in strategies().items() if s.source_type == "memory"
        }
        self._lists: dict[str, dict[str, list[Hit]]] = {}
        self._texts_of_key: dict[str, set[str]] = defaultdict(set)
        self.versions: dict[str, int] = defaultdict(int)
        self.opensearch_calls = 0

    def lists(self, text: str, query: UnderstoodQuery) -> dict[str, list[Hit]]:
        cached = self._lists.setdefault(text, {})
        missing = {name: MAX_SIZE for name in strategies() if name not in cached}
        if missing:
            seed = zlib.crc32(text.encode()) & 0x7FFFFFFF
            context = replace(self._context, exploration_seed=seed)
            retrieval = self._complete(missing, query, context)
            for name in missing:
                result = retrieval.results.get(name)
                hits = result.candidates if result is not None else []
                cached[name] = [(c.id, c.score, c.source) for c in hits]
            for key in query.memory_keys:
                self._texts_of_key[key].add(text)
        return cached

    def _complete(
        self, plan: Mapping[str, int], query: UnderstoodQuery, context: StrategyContext
    ) -> Retrieval:
        """The full lists, however long they take: a list cut short by a timeout or a failed
        shard would skew every policy that draws from it for the rest of the run."""
        for _ in range(FETCH_ATTEMPTS):
            retrieval = retrieve(self._client, plan, query, context)
            self.opensearch_calls += 1
            if not retrieval.partial:
                return retrieval
        failed = {
            name: result.error or "timed out"
            for name, result in retrieval.results.items()
            if result.error or result.timed_out
        }
        raise LtrrError(f"strategies failed for {query.text!r}: {failed}")

    def forget(self, updates: Sequence[MemoryUpdate]) -> None:
        """Drop the memory lists of the queries these updates key."""
        stale: set[str] = set()
        for update in updates:
            stale |= self._texts_of_key.get(update.key, set())
        for text in stale:
            for name in self._memory_strategies:
                self._lists[text].pop(name, None)
            self.versions[text] += 1


def _options(query: UnderstoodQuery, registry: Mapping[str, Strategy]) -> list[StrategyOption]:
    return [
        StrategyOption(strategy=name, source_type=s.source_type, applicable=s.applicable(query))
        for name, s in registry.items()
    ]


def versions(client: OpenSearch) -> dict[str, str]:
    """What produced the figures: ltrr-os, OpenSearch and the learning libraries."""
    found = {
        "ltrr-os": __version__,
        "python": platform.python_version(),
        "opensearch": str(client.info()["version"]["number"]),
    }
    for package in ("vowpalwabbit", "lightgbm", "onnxruntime", "opensearch-py"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def simulate(
    client: OpenSearch,
    context: StrategyContext,
    lexicon: Lexicon,
    world: World,
    policies: Sequence[str],
    searches: int,
    *,
    seed: int,
    extractor: FeatureExtractor,
    memory_every: int = 200,
    latency_every: int = 50,
    ranker_every: int = 2_000,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[SimulationSummary, dict[str, PolicyRun]]:
    """Run the stream through every policy; see the module docstring for how. The memory it
    learns is written into the catalog: the caller restores the priors (`reset_memory`) when
    done, as `ltrr simulate` does."""
    started = time.perf_counter()
    produced_by = versions(client)
    runs = {name: PolicyRun(name, *make_policy(name, seed)) for name in policies}
    system = next((r for r in runs.values() if r.learns), None)
    if system is not None:
        system.training = RankerTraining(extractor, ranker_every)
    cache = _RetrievalCache(client, context)
    registry = strategies()
    memory_updates: list[MemoryUpdate] = []
    logged: list[Logged] = []
    budget = MAX_SIZE * len(registry)
    stream = world.searches(searches)
    texts = list(dict.fromkeys(search.text for search in stream))
    for done, text in enumerate(texts, start=1):
        cache.lists(text, understand(text, lexicon))
        if on_progress is not None:
            on_progress("retrieve", done, len(texts))
    for search in stream:
        clock = time.perf_counter()
        query = understand(search.text, lexicon)
        understand_ms = (time.perf_counter() - clock) * 1000
        lists = cache.lists(search.text, query)
        version = cache.versions[search.text]
        oracle = _oracle_plan(lists, search.intent.wanted)
        options = _options(query, registry)
        served_rounds: dict[str, Served] = {}
        for run in runs.values():
            served = _serve(run, search, query, lists, version, oracle, options, budget, world)
            served_rounds[run.name] = served
            if search.index % latency_every == latency_every - 1:
                _measure_latency(client, context, served, query, understand_ms)
            run.rounds.append(served.round)
        best = _reward(_oracle_round(lists, oracle, search.intent.wanted))
        for served in served_rounds.values():
            served.round.regret = best - _reward(served.round)
        if system is not None:
            served = served_rounds[system.name]
            memory_updates += [
                MemoryUpdate(
                    entity_id=item, query=search.text, weight=weight, timestamp=search.timestamp
                )
                for item, weight in served.engaged.items()
            ]
            logged.append(
                Logged(
                    served.context,
                    served.decision,
                    float(served.round.success),
                    float(served.round.recall),
                )
            )
            training = system.training
            if training is not None and (search.index + 1) % training.every == 0:
                system.ranker = training.train(seed) or system.ranker
        if memory_updates and (search.index + 1) % memory_every == 0:
            batch = MemoryBatch()
            for update in memory_updates:
                batch.add(update)
            apply_memory(
                client,
                context.settings,
                batch,
                search.index + 1,
                max(update.timestamp for update in memory_updates),
            )
            client.indices.refresh(index=context.settings.index_name("catalog"))
            cache.forget(memory_updates)
            memory_updates = []
        if on_progress is not None:
            on_progress("simulate", search.index + 1, searches)
    summary = SimulationSummary(
        parameters={
            "searches": searches,
            "seed": seed,
            "policies": list(policies),
            "system_under_test": system.name if system else None,
            "memory_every": memory_every,
            "latency_every": latency_every,
            "ranker_every": ranker_every,
            "shown": SHOWN,
            "max_size": MAX_SIZE,
            "cost_per_candidate": COST_PER_CANDIDATE,
            "intents": len(world.intents),
            "users": len(world.users),
            "opensearch_round_trips": cache.opensearch_calls,
        },
        versions=produced_by,
        policies={name: _summarise(run) for name, run in runs.items()},
        off_policy=_off_policy(
            logged, {n: r.policy for n, r in runs.items() if r.policy and not r.learns}
        ),
        rankers_trained=system.training.reports if system and system.training else [],
        seconds=round(time.perf_counter() - started, 1),
    )
    return summary, runs


def _oracle_round(
    lists: Mapping[str, list[Hit]], plan: Mapping[str, int], wanted: frozenset[str]
) -> Round:
    """The oracle's recall and cost, the reference of regret."""
    hits = [h[0] for name, size in plan.items() for h in lists[name][:size]]
    return Round(
        success=False,
        ndcg=0.0,
        recall=any(item in wanted for item in hits),
        candidates=len(hits),
    )


def _decide(
    run: PolicyRun, context: DecisionContext, oracle: Mapping[str, int]
) -> tuple[Decision, float]:
    if run.policy is None:
        choices = [StrategyChoice(strategy=n, size=s, probability=1.0) for n, s in oracle.items()]
        return Decision(policy=ORACLE, choices=choices), 0.0
    clock = time.perf_counter()
    decision = run.policy.decide(context)
    return decision, (time.perf_counter() - clock) * 1000


def _serve(
    run: PolicyRun,
    search: SimulatedSearch,
    query: UnderstoodQuery,
    lists: Mapping[str, list[Hit]],
    version: int,
    oracle: Mapping[str, int],
    options: list[StrategyOption],
    budget: int,
    world: World,
) -> Served:
    """Decide, draw, rank, show; let the simulated user engage; let the policy learn."""
    context = DecisionContext(
        query=query,
        user=run.profile(search.user.user_id).view(),
        time=TimeContext.at(search.timestamp),
        options=options,
        budget=budget,
    )
    decision, decide_ms = _decide(run, context, oracle)
    plan = tuple(sorted(decision.plan.items()))
    drawn = {name: lists.get(name, [])[:size] for name, size in plan}
    wanted = search.intent.wanted
    memo = run.shown.get(search.text)
    features = None
    if run.training is None and memo is not None and memo[:2] == (version, plan):
        shown, recall = memo[2], memo[3]
    else:
        union = union_candidates(drawn)
        if run.training is not None:
            features = run.training.extractor.extract(query, union, context.user)
            scores = run.ranker.score_features(features).tolist()
        else:
            scores = run.ranker.score(query, union, context)
        order = sorted(range(len(union)), key=lambda i: (-scores[i], union[i].id))[:SHOWN]
        shown = [union[i].id for i in order]
        recall = any(c.id in wanted for c in union)
        if run.training is None:
            run.shown[search.text] = (version, plan, shown, recall)
    events = world.engage(search, shown, random.Random(f"{world.seed}/{search.index}"))
    engaged: dict[str, float] = {}
    for event in events:
        weight = ENGAGEMENT_WEIGHTS.get(event.action, 0.0)
        if weight > 0:
            engaged[event.object_id] = max(weight, engaged.get(event.object_id, 0.0))
    round_ = Round(
        success=any(item in wanted for item in engaged),
        ndcg=_ndcg(shown, wanted),
        recall=recall,
        candidates=sum(len(hits) for hits in drawn.values()),
        explored=decision.explored,
    )
    if run.training is not None and features is not None:
        _log_for_training(run.training, search, shown, order, features.values, events)
    if run.learns and run.policy is not None:
        candidates_drawn = {
            name: CandidateList(ids=[h[0] for h in hits]) for name, hits in drawn.items()
        }
        run.policy.learn(context, decision, outcome_of(decision, candidates_drawn, engaged))
    for item in engaged:
        if genres := world.genres_of.get(item):
            run.profile(search.user.user_id).engage({"genre": sorted(genres)})
    return Served(round_, engaged, context, decision, decide_ms)


def _log_for_training(
    training: RankerTraining,
    search: SimulatedSearch,
    shown: Sequence[str],
    order: Sequence[int],
    features: Matrix,
    events: Sequence[Engagement],
) -> None:
    """The examined results as a training group, labelled by the strongest engagement."""
    grades: dict[str, int] = {}
    for event in events:
        grades[event.object_id] = max(GRADES.get(event.action, 0), grades.get(event.object_id, 0))
    rows = [position for position, item in enumerate(shown) if item in grades]
    if rows:
        training.add(
            _Group(
                features=features[[order[row] for row in rows]],
                labels=[grades[shown[row]] for row in rows],
                positions=[row + 1 for row in rows],
                search_id=f"simulated-{search.index}",
                timestamp=search.timestamp,
            )
        )


def _measure_latency(
    client: OpenSearch,
    context: StrategyContext,
    served: Served,
    query: UnderstoodQuery,
    understand_ms: float,
) -> None:
    """Time the plan the policy just chose as a real search: understanding, the decision and
    its own `_msearch/template` round trip."""
    if not served.decision.plan:
        return
    retrieval = retrieve(client, served.decision.plan, query, context)
    took = [r.took_ms for r in retrieval.results.values() if r.ok]
    served.round.latency_ms = understand_ms + served.decide_ms + retrieval.round_trip_ms
    served.round.opensearch_ms = float(max(took, default=0))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _metrics(rounds: Sequence[Round], regret_before: float = 0.0) -> PolicyMetrics:
    latencies = [r.latency_ms for r in rounds if r.latency_ms is not None]
    opensearch = [r.opensearch_ms for r in rounds if r.opensearch_ms is not None]
    n = max(len(rounds), 1)
    return PolicyMetrics(
        success_at_10=round(sum(r.success for r in rounds) / n, 4),
        ndcg_at_10=round(sum(r.ndcg for r in rounds) / n, 4),
        candidate_recall=round(sum(r.recall for r in rounds) / n, 4),
        candidates_per_query=round(sum(r.candidates for r in rounds) / n, 1),
        latency_ms_p50=_percentile(latencies, 0.5),
        latency_ms_p95=_percentile(latencies, 0.95),
        opensearch_ms_p50=round(statistics.median(opensearch), 1) if opensearch else None,
        cumulative_regret=round(regret_before + sum(r.regret for r in rounds), 2),
    )


def _curve(rounds: Sequence[Round]) -> list[CurvePoint]:
    """Blocks of 1,000 searches (fewer in short runs: a fifth of the run)."""
    block = max(1, min(CURVE_BLOCK, len(rounds) // 5))
    points = []
    for start in range(0, len(rounds) - block + 1, block):
        chunk = rounds[start : start + block]
        points.append(
            CurvePoint(
                searches=start + block,
                success_at_10=round(sum(r.success for r in chunk) / block, 4),
                candidate_recall=round(sum(r.recall for r in chunk) / block, 4),
                candidates_per_query=round(sum(r.candidates for r in chunk) / block, 1),
            )
        )
    return points


def _summarise(run: PolicyRun) -> PolicySummary:
    rounds = run.rounds
    tail = len(rounds) - max(1, len(rounds) // 5)
    return PolicySummary(
        whole_run=_metrics(rounds),
        last_20_percent=_metrics(rounds[tail:], sum(r.regret for r in rounds[:tail])),
        learning_curve=_curve(rounds),
        explored_share=round(sum(r.explored for r in rounds) / max(len(rounds), 1), 4),
        ranker=run.ranker.name,
    )


def _off_policy(
    logged: Sequence[Logged], targets: Mapping[str, Policy]
) -> dict[str, dict[str, Any]]:
    """IPS, SNIPS and DR of each static policy's success@10 and candidate recall, estimated from
    the learned policy's logged decisions and propensities."""
    estimates: dict[str, dict[str, Any]] = {}
    for name, target in targets.items():
        plans = [tuple(sorted(target.decide(row.context).plan.items())) for row in logged]
        for label, reward in (("success_at_10", "success"), ("candidate_recall", "recall")):
            rounds = [
                LoggedRound(
                    context=row.context.query.features.query_type,
                    action=tuple(sorted(row.decision.plan.items())),
                    propensity=row.decision.probability,
                    reward=float(getattr(row, reward)),
                    target_action=plan,
                )
                for row, plan in zip(logged, plans, strict=True)
            ]
            result: OffPolicyEstimate = estimate(rounds)
            estimates.setdefault(name, {})[label] = result.model_dump()
    return estimates
