"""`ltrr simulate`: an online benchmark on the real catalog, every policy side by side.

Every policy faces the same stream of simulated searches (same seed) on the same node, and the
same simulated users (common random numbers: a user facing the same results behaves the same).
Per search, each strategy runs once at the largest size any policy may draw (one
`_msearch/template`); a policy's plan is then served by the top of each list it chose, which is
exactly what a smaller request would have returned (strategies rank deterministically; the
exploration strategy is seeded per query and memory epoch). Lexical, structured and vector
results do not change during a run and are cached per query text; memory and exploration
results are cached until the next memory update. Latency is measured for real: every
`latency_every` searches, each policy's own plan runs as its own `_msearch/template`.

The Q2E memory is shared infrastructure: it learns from the engagements of the system under test
(the first learned policy, `ltrr` by default) and every policy reads the same memory. Baselines
thus benefit from what LTR&R's traffic taught the memory, which makes the comparison conservative.
"""

from __future__ import annotations

import math
import random
import statistics
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opensearchpy import OpenSearch
from pydantic import BaseModel, Field

from .._errors import LtrrError
from ..feedback import CandidateList, UserProfiles, outcome_of
from ..memory import MemoryUpdate, remember
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
    StrategyOption,
    TimeContext,
)
from ..policy import BanditConfig as PerStrategyConfig
from ..ranking import FusedRanker, Ranker, union_candidates
from ..strategies import Strategy, StrategyContext, retrieve, strategies
from ..understanding import Lexicon, UnderstoodQuery, understand
from ._ope import LoggedRound, OffPolicyEstimate, estimate
from ._world import SimulatedSearch, World

MAX_SIZE = max(SIZE_LEVELS)
SHOWN = 10
COST_PER_CANDIDATE = 0.002
DYNAMIC = frozenset({"memory", "exploration"})
Hit = tuple[str, float, dict[str, Any]]


class PolicyMetrics(BaseModel):
    success_at_10: float
    ndcg_at_10: float
    candidate_recall: float
    candidates_per_query: float
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    opensearch_ms_p50: float | None
    cumulative_regret: float


class PolicySummary(BaseModel):
    whole_run: PolicyMetrics
    last_20_percent: PolicyMetrics
    explored_share: float = 0.0


class SimulationSummary(BaseModel):
    parameters: dict[str, Any]
    versions: dict[str, str]
    policies: dict[str, PolicySummary]
    off_policy: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Round:
    success: bool
    ndcg: float
    recall: bool
    candidates: int
    regret: float
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


@dataclass
class PolicyRun:
    """One policy under test, with its own user profiles and ranker."""

    name: str
    policy: Policy
    learns: bool
    ranker: Ranker = field(default_factory=FusedRanker)
    profiles: UserProfiles = field(default_factory=UserProfiles)
    rounds: list[Round] = field(default_factory=list)


def make_policy(name: str, seed: int) -> tuple[Policy, bool]:
    """The policies `ltrr simulate --policies` knows, and whether each learns."""
    if name in strategies():
        return SingleStrategyPolicy(name, MAX_SIZE), False
    if name == "all":
        return FixedPlanPolicy({"*": MAX_SIZE}, name="all"), False
    if name == "rule":
        return RulePolicy(), False
    if name == "ltrr":
        config = PlanBanditConfig(name="ltrr", exploration="squarecb", seed=seed)
        return PlanBandit(config), True
    if name == "ltrr-per-strategy":
        per_strategy = PerStrategyConfig(
            name="ltrr-per-strategy", exploration="squarecb", seed=seed
        )
        return PerStrategyBandit(per_strategy), True
    known = ", ".join([*strategies(), "all", "rule", "ltrr", "ltrr-per-strategy"])
    raise LtrrError(f"unknown policy {name!r}; known: {known}")


def _ndcg(shown: Sequence[str], wanted: frozenset[str]) -> float:
    gains = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(shown, 1) if item in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), SHOWN) + 1))
    return gains / ideal if ideal else 0.0


def _oracle_reward(lists: Mapping[str, Sequence[Hit]], wanted: frozenset[str]) -> float:
    """The cheapest single strategy and size level that would have retrieved a wanted item."""
    cheapest: int | None = None
    for hits in lists.values():
        for rank, (item, _, _) in enumerate(hits, start=1):
            if item in wanted:
                level = min(size for size in SIZE_LEVELS if size >= rank)
                cheapest = level if cheapest is None else min(cheapest, level)
                break
    return 0.0 if cheapest is None else 1.0 - COST_PER_CANDIDATE * cheapest


class _RetrievalCache:
    """Full-size strategy lists per query: static strategies for the whole run, memory and
    exploration until the memory changes."""

    def __init__(self, client: OpenSearch, context: StrategyContext) -> None:
        self._client = client
        self._context = context
        self._static: dict[str, dict[str, list[Hit]]] = {}
        self._dynamic: dict[str, dict[str, list[Hit]]] = {}
        self.epoch = 0
        self.opensearch_calls = 0

    def new_epoch(self) -> None:
        self.epoch += 1
        self._dynamic.clear()

    def lists(self, text: str, query: UnderstoodQuery) -> dict[str, list[Hit]]:
        cached = {**self._static.get(text, {}), **self._dynamic.get(text, {})}
        missing = {name: MAX_SIZE for name in strategies() if name not in cached}
        if missing:
            seed = zlib.crc32(f"{text}\x1f{self.epoch}".encode()) & 0x7FFFFFFF
            context = replace(self._context, exploration_seed=seed)
            retrieval = retrieve(self._client, missing, query, context)
            self.opensearch_calls += 1
            for name, result in retrieval.results.items():
                hits = [(c.id, c.score, c.source) for c in result.candidates]
                store = self._dynamic if name in DYNAMIC else self._static
                store.setdefault(text, {})[name] = hits
                cached[name] = hits
        return cached


def _options(query: UnderstoodQuery, registry: Mapping[str, Strategy]) -> list[StrategyOption]:
    return [
        StrategyOption(strategy=name, source_type=s.source_type, applicable=s.applicable(query))
        for name, s in registry.items()
    ]


def simulate(
    client: OpenSearch,
    context: StrategyContext,
    lexicon: Lexicon,
    world: World,
    policy_names: Sequence[str],
    searches: int,
    *,
    seed: int,
    memory_every: int = 200,
    latency_every: int = 50,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[SimulationSummary, dict[str, PolicyRun]]:
    """Run the stream through every policy; see the module docstring for how."""
    started = time.perf_counter()
    runs = {name: PolicyRun(name, *make_policy(name, seed)) for name in policy_names}
    system = next((r for r in runs.values() if r.learns), next(iter(runs.values())))
    cache = _RetrievalCache(client, context)
    registry = strategies()
    memory_updates: list[MemoryUpdate] = []
    logged: list[Logged] = []
    budget = MAX_SIZE * len(registry)
    for search in world.searches(searches):
        clock = time.perf_counter()
        query = understand(search.text, lexicon)
        understand_ms = (time.perf_counter() - clock) * 1000
        lists = cache.lists(search.text, query)
        oracle = _oracle_reward(lists, search.intent.wanted)
        options = _options(query, registry)
        measure = search.index % latency_every == 0
        for run in runs.values():
            served = _serve(run, search, query, lists, options, budget, world, seed)
            round_ = served.round
            round_.regret = oracle - (round_.recall - COST_PER_CANDIDATE * round_.candidates)
            if measure:
                _measure_latency(client, context, served, query, understand_ms)
            run.rounds.append(round_)
            if run is system:
                memory_updates += [
                    MemoryUpdate(
                        entity_id=item, query=search.text, weight=weight, timestamp=search.timestamp
                    )
                    for item, weight in served.engaged.items()
                ]
                logged.append(
                    Logged(
                        served.context, served.decision, float(round_.success), float(round_.recall)
                    )
                )
        if memory_updates and (search.index + 1) % memory_every == 0:
            remember(client, context.settings, memory_updates)
            client.indices.refresh(index=context.settings.index_name("catalog"))
            memory_updates = []
            cache.new_epoch()
        if on_progress is not None:
            on_progress(search.index + 1)
    summary = SimulationSummary(
        parameters={
            "searches": searches,
            "seed": seed,
            "policies": list(policy_names),
            "memory_every": memory_every,
            "latency_every": latency_every,
            "shown": SHOWN,
            "max_size": MAX_SIZE,
            "cost_per_candidate": COST_PER_CANDIDATE,
            "opensearch_round_trips": cache.opensearch_calls,
        },
        versions={},
        policies={name: _summarise(run.rounds) for name, run in runs.items()},
        off_policy=_off_policy(logged, [n for n, r in runs.items() if not r.learns]),
        seconds=round(time.perf_counter() - started, 1),
    )
    return summary, runs


def _serve(
    run: PolicyRun,
    search: SimulatedSearch,
    query: UnderstoodQuery,
    lists: Mapping[str, list[Hit]],
    options: list[StrategyOption],
    budget: int,
    world: World,
    seed: int,
) -> Served:
    """Decide, draw, rank, show; let the simulated user engage; let the policy learn."""
    context = DecisionContext(
        query=query,
        user=run.profiles.get(search.user.user_id),
        time=TimeContext.at(search.timestamp),
        options=options,
        budget=budget,
    )
    clock = time.perf_counter()
    decision = run.policy.decide(context)
    decide_ms = (time.perf_counter() - clock) * 1000
    drawn = {name: lists.get(name, [])[:size] for name, size in decision.plan.items()}
    union = union_candidates(drawn)
    scores = run.ranker.score(query, union, context)
    order = sorted(range(len(union)), key=lambda i: (-scores[i], union[i].id))[:SHOWN]
    shown = [union[i].id for i in order]
    events = world.engage(search, shown, random.Random(f"{seed}/{search.index}"))
    engaged: dict[str, float] = {}
    for event in events:
        weight = ENGAGEMENT_WEIGHTS.get(event.action, 0.0)
        if weight > 0:
            engaged[event.object_id] = max(weight, engaged.get(event.object_id, 0.0))
    wanted = search.intent.wanted
    round_ = Round(
        success=any(item in wanted for item in engaged),
        ndcg=_ndcg(shown, wanted),
        recall=any(c.id in wanted for c in union),
        candidates=sum(len(hits) for hits in drawn.values()),
        regret=0.0,
        explored=decision.explored,
    )
    if run.learns:
        candidates = {name: CandidateList(ids=[h[0] for h in hits]) for name, hits in drawn.items()}
        run.policy.learn(context, decision, outcome_of(decision, candidates, engaged))
    for item in engaged:
        if genres := world.genres_of.get(item):
            run.profiles.engage(search.user.user_id, {"genre": sorted(genres)})
    return Served(round_, engaged, context, decision, decide_ms)


def _measure_latency(
    client: OpenSearch,
    context: StrategyContext,
    served: Served,
    query: UnderstoodQuery,
    understand_ms: float,
) -> None:
    """Time the plan the policy just chose as a real search: understanding, the decision and
    its own `_msearch/template` round trip."""
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


def _summarise(rounds: Sequence[Round]) -> PolicySummary:
    tail = len(rounds) - max(1, len(rounds) // 5)
    return PolicySummary(
        whole_run=_metrics(rounds),
        last_20_percent=_metrics(rounds[tail:], sum(r.regret for r in rounds[:tail])),
        explored_share=round(sum(r.explored for r in rounds) / max(len(rounds), 1), 4),
    )


def _off_policy(logged: Sequence[Logged], targets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """IPS, SNIPS and DR of each static policy's success@10 and candidate recall, estimated from
    the learned policy's logged decisions and propensities."""
    estimates: dict[str, dict[str, Any]] = {}
    for name in targets:
        target, _ = make_policy(name, 0)
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
