"""`ltrr simulate`: an online benchmark on the real catalog, every policy side by side, each
through the serving pipeline and the learning rules that serve.

Every policy faces the same stream of simulated searches (same seed) and the same simulated
users (common random numbers: a user facing the same results behaves the same). Each search of
each policy runs `SearchPipeline.search` (understand, decide, retrieve, union, features, rank),
as `LTRRClient.search` does; what the user did teaches that policy's own state by the rules
the learner applies (`LearningRules`): the bandit learns from the logged decision once the
search is shown, the Q2E memory from the engagements (its own namespace: a policy learns only
what its own traffic found), the user profiles, and a LambdaMART ranker retrained every
`ranker_every` searches on that policy's own logs.

Two results per policy and search: the whole system (its plan, its memory, its ranker), and
its retrieval alone (the same candidates ranked by the fused score, shown to the same user with
the same random numbers), so the ranker's share of a lead is visible.

Speed comes from under the pipeline (`CachedRetriever`: each strategy's list fetched once per
query text at the largest size, and plans served from its top; memory lists fetched again when
their memory changed), never from a second implementation. Latency is real: every
`latency_every` searches, each policy's plan runs as its own `_msearch/template`.

The run writes each policy's memory under its own namespace in the catalog and removes it all
when it ends, however it ends; the deployment's own memory is never touched.
"""

from __future__ import annotations

import math
import platform
import random
import statistics
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import metadata
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from pydantic import BaseModel, Field

from .. import __version__
from .._errors import LtrrError, OpenSearchUnavailableError
from ..catalog import SourceRow, entity_vectors, ingest_rows
from ..config import DEFAULT_COST_PER_CANDIDATE, LtrrSettings
from ..feedback import Profile
from ..learning import LearningRules, LoggedEvent, LoggedSearch
from ..memory import MemoryBatch, MemoryUpdate, apply_memory, forget_namespaces
from ..pipeline import CachedRetriever, SearchPipeline, Served
from ..pipeline._cache import TIMEOUT_MS
from ..policy import (
    SIZE_LEVELS,
    Decision,
    DecisionContext,
    FixedPlanPolicy,
    LoggedRound,
    OffPolicyEstimate,
    Outcome,
    PerStrategyBandit,
    PlanBandit,
    PlanBanditConfig,
    Policy,
    RulePolicy,
    SingleStrategyPolicy,
    StrategyChoice,
    estimate,
)
from ..policy import BanditConfig as PerStrategyConfig
from ..ranking import (
    GRADES,
    LambdaMARTRanker,
    LoggedSearches,
    Matrix,
    Ranker,
    TrainConfig,
    fit_ranker,
)
from ..strategies import retrieve, strategies
from ._world import Engagement, Newcomer, SimulatedSearch, World

MAX_SIZE = max(SIZE_LEVELS)
SHOWN = 10
ORACLE = "oracle"
CURVE_BLOCK = 1000
LEARNED = ("ltrr", "ltrr-per-strategy")
SYSTEM = "whole system"
ALONE = "retrieval alone"


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


GENERATORS = ("related", "personal", "fresh")
"""The source types whose use the report breaks down by query family."""


class PolicySummary(BaseModel):
    whole_run: PolicyMetrics
    last_20_percent: PolicyMetrics
    retrieval_alone: PolicyMetrics = Field(description="same candidates, ranked by the fused score")
    retrieval_alone_last_20_percent: PolicyMetrics
    learning_curve: list[CurvePoint] = Field(default_factory=list)
    explored_share: float = 0.0
    ranker: str = "fused"
    by_family: dict[str, float] = Field(
        default_factory=dict, description="success@10 over the whole run, by query family"
    )
    vague_with_history: float | None = Field(
        default=None, description="success@10 on vague queries of users with a taste"
    )
    generator_share: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="query family -> generator (related, personal, fresh) -> share of its "
        "searches whose plan ran it",
    )
    new_entities: NewEntities | None = None


class NewEntities(BaseModel):
    """How soon new entities were found: searches from an entity's arrival to its first
    engagement (by any user), over the entities that arrived."""

    arrived: int
    engaged: int
    median_searches_to_first_engagement: float | None
    mean_searches_counting_never_as_run_end: float | None


PolicySummary.model_rebuild()


class SimulationSummary(BaseModel):
    parameters: dict[str, Any]
    versions: dict[str, str]
    policies: dict[str, PolicySummary]
    off_policy: dict[str, dict[str, OffPolicyEstimate]] = Field(default_factory=dict)
    rankers_trained: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = Field(default=True, description="False: the run stopped early (error)")
    error: str | None = None


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
    family: str = ""
    history: bool = False
    """The user had a taste (engagement history) when searching."""
    ran: frozenset[str] = frozenset()
    """The source types of the strategies the plan ran."""


@dataclass(frozen=True)
class Logged:
    """A decision of the system under test as its logs hold it, with the rewards it earned."""

    context: DecisionContext
    decision: Decision
    success: float
    recall: float


@dataclass
class RankerTraining:
    """The shown results of a policy's newest `window` searches, labelled by what the users
    did, as `ltrr train-ranker` reads them from the logs; and the models trained on them."""

    every: int
    window: int = 10_000
    groups: deque[tuple[Matrix, list[int], list[int], datetime]] = field(default_factory=deque)
    reports: list[dict[str, Any]] = field(default_factory=list)

    def add(self, served: Served, events: Sequence[Engagement]) -> None:
        grades: dict[str, int] = {}
        for event in events:
            grades[event.object_id] = max(
                GRADES.get(event.action, 0), grades.get(event.object_id, 0)
            )
        shown = served.shown
        rows = [position for position, item in enumerate(shown) if item in grades]
        if not rows:
            return
        order = served.ranking.order
        features = served.features.values[[order[row] for row in rows]]
        self.groups.append(
            (features, [grades[shown[r]] for r in rows], [r + 1 for r in rows], served.moment)
        )
        if len(self.groups) > self.window:
            self.groups.popleft()

    def train(self, pipeline: SearchPipeline, seed: int) -> LambdaMARTRanker | None:
        """A model on the groups so far, or None while too few searches had engagement."""
        schema = pipeline.features.schema
        data = LoggedSearches(
            schema=schema,
            features=np.vstack([g[0] for g in self.groups]),
            labels=np.asarray([x for g in self.groups for x in g[1]], dtype=np.int32),
            positions=np.asarray([p for g in self.groups for p in g[2]], dtype=np.int32),
            sizes=[len(g[1]) for g in self.groups],
            search_ids=[f"g{i}" for i in range(len(self.groups))],
            timestamps=[g[3] for g in self.groups],
        )
        try:
            booster, report = fit_ranker(data, TrainConfig(seed=seed, threads=1))
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
        return LambdaMARTRanker(booster, pipeline.features, report)


class OraclePolicy(Policy):
    """Knows what the user wants: draws the cheapest single strategy and size that retrieves a
    wanted item (nothing when none does). The reference of regret; set per search."""

    name = ORACLE

    def __init__(self) -> None:
        self.plan: dict[str, int] = {}

    def decide(self, context: DecisionContext) -> Decision:
        return Decision(
            policy=self.name,
            choices=[
                StrategyChoice(
                    strategy=o.strategy, size=self.plan.get(o.strategy, 0), probability=1.0
                )
                for o in context.options
            ],
        )


@dataclass
class PolicyRun:
    """One policy under test, with its own memory namespace, profiles and ranker."""

    name: str
    policy: Policy
    learns: bool
    namespace: str
    fused: Ranker
    training: RankerTraining
    ranker: Ranker | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    alone: list[Round] = field(default_factory=list)
    memory: list[MemoryUpdate] = field(default_factory=list)
    first_engaged: dict[str, int] = field(default_factory=dict)
    """Entity -> the first search that engaged with it (kept for new entities)."""

    def profile(self, user_id: str) -> Profile:
        return self.profiles.setdefault(user_id, Profile(user_id=user_id))


WITHOUT = "ltrr-without-"


def policy_names() -> list[str]:
    """Every policy `ltrr simulate --policies` runs by default, in report order: each strategy
    that runs alone (not an expansion), the references, the learned policies and LTR&R
    without each new generator. (`ltrr-without-<strategy or source type>` takes any.)"""
    alone = [name for name, s in strategies().items() if not s.expands]
    ablations = [f"{WITHOUT}{g}" for g in GENERATORS]
    return [*alone, "all", "rule", *LEARNED, *ablations, ORACLE]


class WithoutStrategies(Policy):
    """A policy that may not run some strategies: to each decision they are not applicable.
    What LTR&R gains from a strategy is what it loses without it."""

    def __init__(self, policy: Policy, excluded: frozenset[str], name: str) -> None:
        self.policy = policy
        self.excluded = excluded
        self.name = name

    def _restricted(self, context: DecisionContext) -> DecisionContext:
        options = [
            o.model_copy(update={"applicable": False}) if o.strategy in self.excluded else o
            for o in context.options
        ]
        return context.model_copy(update={"options": options})

    def decide(self, context: DecisionContext) -> Decision:
        return self.policy.decide(self._restricted(context))

    def learn(self, context: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        self.policy.learn(self._restricted(context), decision, outcome)


def make_policy(
    name: str, seed: int, cost_per_candidate: float = DEFAULT_COST_PER_CANDIDATE
) -> tuple[Policy, bool]:
    """A policy by name and whether it learns (the learned ones paying `cost_per_candidate`)."""
    if name.startswith(WITHOUT):
        gone = name.removeprefix(WITHOUT)
        excluded = frozenset(n for n, s in strategies().items() if gone in (n, s.source_type))
        if not excluded:
            raise LtrrError(f"{name}: no strategy or source type {gone!r}")
        plan_config = PlanBanditConfig(
            name=name, exploration="squarecb", seed=seed, cost_per_candidate=cost_per_candidate
        )
        return WithoutStrategies(PlanBandit(plan_config), excluded, name), True
    if name in strategies() and not strategies()[name].expands:
        return SingleStrategyPolicy(name, MAX_SIZE), False
    if name == "all":
        return FixedPlanPolicy({"*": MAX_SIZE}, name="all"), False
    if name == "rule":
        return RulePolicy(), False
    if name == "ltrr":
        plan_config = PlanBanditConfig(
            name=name, exploration="squarecb", seed=seed, cost_per_candidate=cost_per_candidate
        )
        return PlanBandit(plan_config), True
    if name == "ltrr-per-strategy":
        config = PerStrategyConfig(
            name=name, exploration="squarecb", seed=seed, cost_per_candidate=cost_per_candidate
        )
        return PerStrategyBandit(config), True
    if name == ORACLE:
        return OraclePolicy(), False
    raise LtrrError(f"unknown policy {name!r}; known: {', '.join(policy_names())}")


def _reads_memory(name: str) -> bool:
    """Whether a policy's plans may draw from the memory strategy (single strategies other
    than memory never do: they need no memory of their own)."""
    return name not in strategies() or strategies()[name].source_type == "memory"


def _ndcg(shown: Sequence[str], wanted: frozenset[str]) -> float:
    gains = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(shown, 1) if item in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), SHOWN) + 1))
    return gains / ideal if ideal else 0.0


def oracle_plan(lists: Mapping[str, Sequence[str]], wanted: frozenset[str]) -> dict[str, int]:
    """The cheapest single strategy and size level whose list holds a wanted item (nothing when
    none does)."""
    best: tuple[int, str] | None = None
    for name, ids in lists.items():
        rank = next((r for r, item in enumerate(ids, 1) if item in wanted), None)
        if rank is not None:
            level = min(size for size in SIZE_LEVELS if size >= rank)
            best = min(best or (level, name), (level, name))
    return {} if best is None else {best[1]: best[0]}


def _reward(round_: Round, cost_per_candidate: float) -> float:
    return float(round_.recall) - cost_per_candidate * round_.candidates


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


class Simulation:
    """One run: the world, the policies, the pipeline over a cache of retrieval."""

    def __init__(
        self,
        client: OpenSearch,
        pipeline: SearchPipeline,
        world: World,
        policies: Sequence[str],
        *,
        seed: int,
        rules: LearningRules | None = None,
        memory_every: int = 200,
        latency_every: int = 50,
        ranker_every: int = 2_000,
    ) -> None:
        self.client = client
        self.world = world
        self.seed = seed
        self.rules = rules or LearningRules(reward_window_s=0)
        self.memory_every = memory_every
        self.latency_every = latency_every
        self.ranker_every = ranker_every
        self.cost_per_candidate = pipeline.context.settings.cost_per_candidate
        self.cache = CachedRetriever(client, MAX_SIZE)  # namespaces: once the runs exist
        self.serving = pipeline
        # Expansions are timed by the latency samples, not cut short by a cache miss's fetch.
        settings = pipeline.context.settings.model_copy(
            update={"expansion_deadline_ms": TIMEOUT_MS}
        )
        self.pipeline = SearchPipeline(
            pipeline.schema,
            pipeline.lexicon,
            replace(pipeline.context, settings=settings),
            self.cache,
            budget=pipeline.budget,
        )
        self._vectors: dict[str, list[float]] = {}
        self._arrived_at: dict[str, int] = {}
        self.runs: dict[str, PolicyRun] = {}
        for name in policies:
            policy, learns = make_policy(name, seed, self.cost_per_candidate)
            self.runs[name] = PolicyRun(
                name=name,
                policy=policy,
                learns=learns,
                namespace=f"sim-{name}" if _reads_memory(name) and name != ORACLE else "",
                fused=self.pipeline.fused,
                training=RankerTraining(ranker_every),
            )
        self.cache.namespaces = sorted({r.namespace for r in self.runs.values() if r.namespace})
        self.system = next((r for r in self.runs.values() if r.learns), None)
        if ORACLE in self.runs and self.system is not None:
            # The oracle knows what the system under test's memory knows, and learns nothing.
            self.runs[ORACLE].namespace = self.system.namespace
        self.logged: list[Logged] = []
        self._batch = 0

    @property
    def namespaces(self) -> list[str]:
        return [run.namespace for run in self.runs.values() if run.namespace]

    def run(
        self, searches: int, on_progress: Callable[[str, int, int], None] | None = None
    ) -> SimulationSummary:
        """Simulate the stream; the summary says whether it completed (an error stops the
        stream, keeps what was measured, and is reported). The memory written is removed in
        any case."""
        started = time.perf_counter()
        produced_by = versions(self.client)
        stream = self.world.searches(searches)
        error: str | None = None
        settings = self.serving.context.settings
        forget_namespaces(self.client, settings, self.namespaces)  # a killed run's leftovers
        self._remove_newcomers()
        arrivals = self.world.arrivals(searches)
        try:
            for search in stream:
                if search.index in arrivals:
                    self._add_newcomers(arrivals[search.index], search)
                self._search(search)
                if (search.index + 1) % self.memory_every == 0:
                    self._flush_memory(search.timestamp)
                if (search.index + 1) % self.ranker_every == 0:
                    for run in self.runs.values():
                        if run.name != ORACLE:
                            run.ranker = run.training.train(self.pipeline, self.seed) or run.ranker
                if on_progress is not None:
                    on_progress("simulate", search.index + 1, searches)
        except (LtrrError, OSError, KeyboardInterrupt) as exc:
            error = str(exc) or type(exc).__name__  # what ran is still reported
        finally:
            forget_namespaces(self.client, settings, self.namespaces)
            self._remove_newcomers()
        done = len(next(iter(self.runs.values())).rounds) if self.runs else 0
        return self._summary(done, produced_by, time.perf_counter() - started, error)

    def _add_newcomers(self, newcomers: Sequence[Newcomer], search: SimulatedSearch) -> None:
        """New entities join the catalog, stamped with the simulated time; every cached list
        is fetched again."""
        context = self.pipeline.context
        rows = [SourceRow("simulation", n, dict(c.entity)) for n, c in enumerate(newcomers, 1)]
        report = ingest_rows(
            self.client,
            context.settings,
            context.schema,
            rows,
            context.encoder,
            added_at=search.timestamp,
        )
        if report.rejected:
            raise LtrrError(f"new entities rejected: {report.rejected[0].reason}")
        ids = [c.id for c in newcomers]
        self.world.arrive(newcomers, self._vectors_of(ids))
        self._arrived_at.update(dict.fromkeys(ids, search.index))
        self.cache.catalog_changed()

    def _remove_newcomers(self) -> None:
        """The run's new entities leave the catalog (however the run ended)."""
        if self.world.newcomers:
            self.client.delete_by_query(
                index=self.serving.context.settings.index_name("catalog"),
                body={"query": {"ids": {"values": [c.id for c in self.world.newcomers]}}},
                refresh=True,
                conflicts="proceed",
            )

    def _vectors_of(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """The entities' vectors, fetched once."""
        missing = [i for i in ids if i not in self._vectors]
        if missing:
            self._vectors.update(
                entity_vectors(self.client, self.serving.context.settings, missing)
            )
        return {i: self._vectors[i] for i in ids if i in self._vectors}

    def _search(self, search: SimulatedSearch) -> None:
        wanted = self.world.wanted(search)
        oracle = self._oracle_plan(search, wanted)
        served_rounds: list[Round] = []
        for run in self.runs.values():
            if isinstance(run.policy, OraclePolicy):
                run.policy.plan = oracle
            user = run.profile(search.user.user_id).view(search.timestamp)
            served = self.pipeline.search(
                search.text,
                policy=run.policy,
                ranker=run.ranker or run.fused,
                user=user,
                moment=search.timestamp,
                limit=SHOWN,
                search_id=f"{run.name}-{search.index}",
                exploration_seed=zlib.crc32(search.text.encode()) & 0x7FFFFFFF,
                memory_namespace=run.namespace,
            )
            events = self._engage(search, served.shown)
            round_ = self._round(search, wanted, served, events, user.taste is not None)
            if run.ranker is None:
                alone = round_
            else:
                fused = self.pipeline.rank(run.fused, served.features, served.union, SHOWN)
                shown = [served.union[i].id for i in fused.order]
                engaged = self._engage(search, shown)
                alone = self._round(search, wanted, served, engaged, round_.history, shown)
            for event in events:
                if event.action in GRADES and event.object_id in self._arrived_at:
                    run.first_engaged.setdefault(event.object_id, search.index)
            if search.index % self.latency_every == self.latency_every - 1:
                self._measure_latency(served, round_)
            run.rounds.append(round_)
            run.alone.append(alone)
            served_rounds.append(round_)
            self._learn(run, search, served, events)
            if run is self.system:
                self.logged.append(
                    Logged(
                        served.context,
                        served.decision,
                        float(round_.success),
                        float(round_.recall),
                    )
                )
        oracle_round = self.runs[ORACLE].rounds[-1] if ORACLE in self.runs else None
        cost = self.cost_per_candidate
        best = (
            _reward(oracle_round, cost)
            if oracle_round is not None
            else (1.0 - cost * sum(oracle.values()) if oracle else 0.0)
        )
        for run in self.runs.values():
            for round_ in (run.rounds[-1], run.alone[-1]):
                round_.regret = best - _reward(round_, cost)

    def _engage(self, search: SimulatedSearch, shown: Sequence[str]) -> list[Engagement]:
        """The user's actions, with the search's own random numbers (the same for every
        policy and arm)."""
        return self.world.engage(search, shown, random.Random(f"{self.world.seed}/{search.index}"))

    @staticmethod
    def _round(
        search: SimulatedSearch,
        wanted: frozenset[str],
        served: Served,
        events: Sequence[Engagement],
        history: bool,
        shown: Sequence[str] | None = None,
    ) -> Round:
        engaged = {e.object_id for e in events if e.action in GRADES}
        registry = strategies()
        return Round(
            success=bool(engaged & wanted),
            ndcg=_ndcg(served.shown if shown is None else shown, wanted),
            recall=any(c.id in wanted for c in served.union),
            candidates=sum(len(r.candidates) for r in served.retrieval.results.values()),
            explored=served.decision.explored,
            family=search.intent.family,
            history=history,
            ran=frozenset(registry[name].source_type for name in served.decision.plan),
        )

    def _learn(
        self, run: PolicyRun, search: SimulatedSearch, served: Served, events: list[Engagement]
    ) -> None:
        """What the learner would learn from this search's log, by the same rules."""
        record = served.record(
            user_id=search.user.user_id,
            session_id=None,
            slot_fields=self.pipeline.slot_fields,
            with_features=False,  # the ranker's training takes them from `served`
        )
        moment = search.timestamp
        logged = [
            LoggedEvent(
                key=f"{served.search_id}-{n}",
                search_id=served.search_id,
                action=event.action,
                object_id=event.object_id,
                timestamp=moment,
                ingested_at=moment,
            )
            for n, event in enumerate(events)
        ]
        if run.learns:
            outcome = self.rules.outcome(record, moment, logged)
            if outcome is not None:
                run.policy.learn(record.context, record.decision, outcome)
        joined = [(LoggedSearch.of(record, moment), event) for event in logged]
        for user in self.rules.profile_users(joined):
            run.profile(user)
        vectors = self._vectors_of(sorted(self.rules.engaged_entities(joined)))
        lessons = self.rules.engagements(joined, run.profiles, run.namespace, vectors)
        if run.namespace and run.name != ORACLE:
            run.memory += lessons.memory
        run.training.add(served, events)

    def _flush_memory(self, moment: datetime) -> None:
        """Each policy's memory so far, as the learner writes it (one numbered batch per
        namespace); the memory lists of the keys written are fetched again."""
        written: list[str] = []
        settings = self.serving.context.settings
        for run in self.runs.values():
            if not run.memory:
                continue
            batch = MemoryBatch()
            for update in run.memory:
                batch.add(update)
            self._batch += 1
            result = apply_memory(
                self.client, settings, batch, self._batch, moment, namespace=run.namespace
            )
            if result.failed:
                raise LtrrError(
                    f"{len(result.failed)} memory updates of {run.name} failed "
                    f"(first: {result.failed[0]}; see the log)"
                )
            written += [update.key for update in run.memory]
            run.memory = []
        if written:
            self.client.indices.refresh(index=settings.index_name("catalog"))
            self.cache.invalidate(written)

    def _oracle_plan(self, search: SimulatedSearch, wanted: frozenset[str]) -> dict[str, int]:
        """The oracle's plan, among the strategies that run from the query alone, with what the
        system under test knows (its memory, the user's taste in its profiles)."""
        query = self.pipeline.understand(search.text)
        taste = None
        if self.system is not None:
            taste = self.system.profile(search.user.user_id).view(search.timestamp).taste
        context = replace(
            self.pipeline.context,
            exploration_seed=zlib.crc32(search.text.encode()) & 0x7FFFFFFF,
            memory_namespace=self.system.namespace if self.system is not None else "",
            now=search.timestamp,
            user_vector=tuple(taste) if taste else None,
        )
        names = [
            n for n, s in strategies().items() if not s.expands and s.applicable(query, context)
        ]
        lists = self.cache(dict.fromkeys(names, MAX_SIZE), query, context).results
        return oracle_plan(
            {name: [c.id for c in r.candidates] for name, r in lists.items()}, wanted
        )

    def _measure_latency(self, served: Served, round_: Round) -> None:
        """Time the plan the policy just chose as a real search: understanding, the decision
        and its own `_msearch/template` round trip."""
        if not served.decision.plan:
            return
        try:
            retrieval = retrieve(
                self.client, served.decision.plan, served.query, self.pipeline.context
            )
        except OpenSearchUnavailableError:
            return  # a latency sample lost to an overloaded node, not the run
        took = [r.took_ms for r in retrieval.results.values() if r.ok]
        round_.latency_ms = (
            served.timings_ms["understand"] + served.timings_ms["decide"] + retrieval.round_trip_ms
        )
        round_.opensearch_ms = float(max(took, default=0))

    def _summary(
        self, done: int, produced_by: dict[str, str], seconds: float, error: str | None
    ) -> SimulationSummary:
        return SimulationSummary(
            parameters={
                "searches": done,
                "seed": self.seed,
                "policies": list(self.runs),
                "system_under_test": self.system.name if self.system else None,
                "candidate_budget": self.pipeline.budget,
                "memory_every": self.memory_every,
                "latency_every": self.latency_every,
                "ranker_every": self.ranker_every,
                "shown": SHOWN,
                "max_size": MAX_SIZE,
                "cost_per_candidate": self.cost_per_candidate,
                "intents": len(self.world.intents),
                "users": len(self.world.users),
                "opensearch_round_trips": self.cache.round_trips,
            },
            versions=produced_by,
            policies={
                name: _summarise(run, self._arrived_at, done) for name, run in self.runs.items()
            },
            off_policy=off_policy(
                self.logged,
                {
                    n: r.policy
                    for n, r in self.runs.items()
                    if not r.learns and not isinstance(r.policy, OraclePolicy)
                },
            ),
            rankers_trained={
                n: r.training.reports for n, r in self.runs.items() if r.training.reports
            },
            seconds=round(seconds, 1),
            complete=error is None,
            error=error,
        )


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


def _by_family(rounds: Sequence[Round]) -> dict[str, float]:
    found: dict[str, list[bool]] = {}
    for r in rounds:
        found.setdefault(r.family, []).append(r.success)
    return {family: round(sum(hits) / len(hits), 4) for family, hits in sorted(found.items())}


def _generator_share(rounds: Sequence[Round]) -> dict[str, dict[str, float]]:
    by_family: dict[str, list[Round]] = {}
    for r in rounds:
        by_family.setdefault(r.family, []).append(r)
    return {
        family: {g: round(sum(g in r.ran for r in found) / len(found), 4) for g in GENERATORS}
        for family, found in sorted(by_family.items())
    }


def _new_entities(
    arrived_at: Mapping[str, int], first: Mapping[str, int], done: int
) -> NewEntities:
    waits = [first[i] - at for i, at in arrived_at.items() if i in first]
    censored = [first.get(i, done) - at for i, at in arrived_at.items()]
    return NewEntities(
        arrived=len(arrived_at),
        engaged=len(waits),
        median_searches_to_first_engagement=statistics.median(waits) if waits else None,
        mean_searches_counting_never_as_run_end=(
            round(statistics.fmean(censored), 1) if censored else None
        ),
    )


def _summarise(run: PolicyRun, arrived_at: Mapping[str, int], done: int) -> PolicySummary:
    rounds, alone = run.rounds, run.alone
    vague = [r.success for r in rounds if r.family == "vague" and r.history]
    tail = len(rounds) - max(1, len(rounds) // 5)
    return PolicySummary(
        whole_run=_metrics(rounds),
        last_20_percent=_metrics(rounds[tail:], sum(r.regret for r in rounds[:tail])),
        retrieval_alone=_metrics(alone),
        retrieval_alone_last_20_percent=_metrics(alone[tail:], sum(r.regret for r in alone[:tail])),
        learning_curve=_curve(rounds),
        explored_share=round(sum(r.explored for r in rounds) / max(len(rounds), 1), 4),
        ranker=(run.ranker or run.fused).name,
        by_family=_by_family(rounds),
        vague_with_history=round(sum(vague) / len(vague), 4) if vague else None,
        generator_share=_generator_share(rounds),
        new_entities=_new_entities(arrived_at, run.first_engaged, done) if arrived_at else None,
    )


def _plan_key(plan: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((s, n) for s, n in plan.items() if n > 0))


def off_policy(
    logged: Sequence[Logged], targets: Mapping[str, Policy]
) -> dict[str, dict[str, OffPolicyEstimate]]:
    """IPS, SNIPS and DR of each static policy's success@10 and candidate recall, with their
    intervals, from the learned policy's logged decisions and the probability they logged for
    every plan."""
    estimates: dict[str, dict[str, OffPolicyEstimate]] = {}
    for name, target in targets.items():
        plans = [_plan_key(target.decide(row.context).plan) for row in logged]
        for metric, reward in (("success_at_10", "success"), ("candidate_recall", "recall")):
            rounds = []
            for row, plan in zip(logged, plans, strict=True):
                budget = row.context.budget
                logging = {_plan_key(o.plan): o.probability for o in row.decision.distribution}
                rounds.append(
                    LoggedRound(
                        context=row.context.query.features.query_type,
                        action=_plan_key(row.decision.plan),
                        propensity=row.decision.probability_of(row.decision.plan, budget)
                        or row.decision.probability,
                        reward=float(getattr(row, reward)),
                        target={plan: 1.0},
                        logging=logging or None,
                    )
                )
            estimates.setdefault(name, {})[metric] = estimate(rounds)
    return estimates


TASTE_TRACKS = 10_000
"""The most popular tracks with a genre or mood: vague intents range over them, and users'
points of taste are drawn among them."""


def taste_vectors(
    client: OpenSearch, settings: LtrrSettings, entities: Sequence[Mapping[str, Any]]
) -> dict[str, list[float]]:
    """The vectors the simulated users' tastes live among (see `build_world`)."""
    tracks = [
        e for e in entities if e.get("entity_type") == "track" and (e.get("genre") or e.get("mood"))
    ]
    tracks.sort(key=lambda e: (-float(e.get("popularity") or 0.0), str(e["id"])))
    return entity_vectors(client, settings, [str(t["id"]) for t in tracks[:TASTE_TRACKS]])


def simulate(
    client: OpenSearch,
    pipeline: SearchPipeline,
    world: World,
    policies: Sequence[str],
    searches: int,
    *,
    seed: int,
    on_progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> tuple[SimulationSummary, Simulation]:
    """Run the stream through every policy; see the module docstring."""
    simulation = Simulation(client, pipeline, world, policies, seed=seed, **options)
    return simulation.run(searches, on_progress), simulation
