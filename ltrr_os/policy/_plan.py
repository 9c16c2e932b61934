"""PlanBandit: the joint formulation, and the recommended one (see new_default_policy).

One contextual bandit decision over a curated list of whole plans, rewarded for the search as a
whole: the best engagement weight among the strategies that found the engaged item, minus
cost_per_candidate * all candidates drawn. Unlike the factored formulation it sees redundancy
(a second strategy finding the same item adds nothing, so it is not paid for), but it chooses
only among the plans listed.

Why it is the default, with SquareCB (scripts/bench_policy.py, synthetic environment, last 1,000
of 5,000 searches, 3 seeds): it finds the item in 85% of searches with 79 candidates (reward
0.547), where the rule policy finds 88% with 117 (0.499), the per-strategy bandit 90% with 154
(0.442) and every strategy at 100 84% with 200 (0.300); the best fixed plan per query type in
hindsight earns 0.564. The factored bandit pays each strategy for its own hit, so it keeps
running strategies that only find what another already found. SquareCB beats epsilon-greedy for
both formulations (0.547 vs 0.493 here): it explores the plans that might be best, not uniformly,
and explores less as the model grows sure. The per-strategy bandit does find more; if recall is
worth more than that, the place to say so is cost_per_candidate."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import replace

from pydantic import Field, NonNegativeInt
from vowpalwabbit import Workspace

from ..config import DEFAULT_COST_PER_CANDIDATE
from ._budget import cap_to_budget
from ._features import NEW_RECORD, context_features, plan_action
from ._models import Decision, DecisionContext, Outcome, PlanProbability, StrategyChoice
from ._ope import LoggedRound
from ._static import DEFAULT_RULES, EVERY_STRATEGY
from ._vw import DEFAULT_POLICY_NAME, BanditConfig, VWBandit, argmax, sample

DEFAULT_PLANS: list[dict[str, int]] = [
    {"lexical": 100},
    {"vector": 100},
    {"structured": 100},
    {"memory": 100},
    {"lexical": 50, "vector": 50},
    {"lexical": 50, "memory": 50},
    {"structured": 50, "vector": 50},
    {"structured": 50, "memory": 50},
    {"lexical": 10, "memory": 10},
    {"lexical": 50, "related": 30},
    {"structured": 50, "related": 30},
    {"lexical": 30, "memory": 30, "related": 30},
    {"vector": 50, "personal": 50},
    {"structured": 50, "personal_taste": 50},
    {"lexical": 30, "memory": 10, "personal_taste": 30},
    {"structured": 50, "fresh": 10},
    {"lexical": 30, "memory": 30, "fresh": 10},
    *(dict(plan) for plan in DEFAULT_RULES.values()),
    {EVERY_STRATEGY: 30},
    {EVERY_STRATEGY: 100},
]


class PlanBanditConfig(BanditConfig):
    plans: list[dict[str, NonNegativeInt]] = Field(
        default_factory=lambda: [dict(plan) for plan in DEFAULT_PLANS], min_length=1
    )


@functools.lru_cache(maxsize=4096)
def _feasible(
    plans: tuple[tuple[tuple[str, int], ...], ...], applicable: tuple[str, ...], budget: int
) -> tuple[tuple[tuple[str, int], ...], ...]:
    """The distinct non-empty plans over these strategies within this budget (see plans())."""
    found: list[tuple[tuple[str, int], ...]] = []
    for plan in plans:
        wanted = dict(plan)
        sizes = {s: wanted.get(s, wanted.get(EVERY_STRATEGY, 0)) for s in applicable}
        fitted = tuple((s, n) for s, n in cap_to_budget(sizes, budget).items() if n > 0)
        if fitted and fitted not in found:
            found.append(fitted)
    return tuple(found)


def _chain(
    plans: Sequence[dict[str, int]],
    pmf: Sequence[float],
    chosen: dict[str, int],
    strategies: Sequence[str],
) -> list[float]:
    """Each strategy's probability of its size given the sizes before it (chain rule), so that
    the product over the choices is the probability of the plan."""
    matching = list(range(len(plans)))
    before = 1.0
    conditional = []
    for strategy in strategies:
        size = chosen.get(strategy, 0)
        matching = [i for i in matching if plans[i].get(strategy, 0) == size]
        mass = sum(pmf[i] for i in matching)
        conditional.append(min(1.0, mass / before))
        before = mass
    return conditional


class PlanBandit(VWBandit):
    """One decision over whole plans; see the module docstring."""

    kind = "plan"
    config_type = PlanBanditConfig

    def __init__(self, config: PlanBanditConfig | None = None, workspace: Workspace | None = None):
        config = config or PlanBanditConfig(name="plan")
        super().__init__(config, workspace)
        self._plans = tuple(tuple(plan.items()) for plan in config.plans)

    def plans(self, context: DecisionContext) -> list[dict[str, int]]:
        """The distinct plans this search can run: inapplicable strategies dropped, sizes cut
        largest first to the budget, empty plans left out. The plan drawn is the plan run."""
        applicable = tuple(option.strategy for option in context.options if option.applicable)
        return [dict(plan) for plan in _feasible(self._plans, applicable, context.budget)]

    def _history(self, context: DecisionContext) -> dict[str, tuple[str, str]]:
        """Each strategy's record for this query type, as action features see it now."""
        query_type = context.query.features.query_type
        return {o.strategy: self.history.buckets(query_type, o.strategy) for o in context.options}

    @staticmethod
    def _actions(
        context: DecisionContext,
        plans: Sequence[Mapping[str, int]],
        history: Mapping[str, tuple[str, str]],
    ) -> list[str]:
        sources = {option.strategy: option.source_type for option in context.options}
        return [
            plan_action(
                tuple((s, sources[s], n, history.get(s, NEW_RECORD)) for s, n in plan.items())
            )
            for plan in plans
        ]

    def decide(self, context: DecisionContext) -> Decision:
        """One plan drawn from the PMF; each choice carries its chain-rule probability, so the
        decision's probability is the plan's. The whole PMF and the action features' history
        are logged with it: learning needs nothing else."""
        strategies = [option.strategy for option in context.options]
        plans = self.plans(context)
        if not plans:  # nothing applies: nothing to decide
            nothing = [StrategyChoice(strategy=s, size=0, probability=1.0) for s in strategies]
            return Decision(
                policy=self.name,
                policy_version=self.policy_version,
                choices=nothing,
                distribution=[PlanProbability(plan={}, probability=1.0)],
            )
        shared = "shared " + context_features(context)
        with self._lock:
            history = self._history(context)
            pmf = self._vw.predict([shared, *self._actions(context, plans, history)])
            index = sample(pmf, self._rng)
        chosen = plans[index]
        choices = [
            StrategyChoice(strategy=s, size=chosen.get(s, 0), probability=p)
            for s, p in zip(strategies, _chain(plans, pmf, chosen, strategies), strict=True)
        ]
        return Decision(
            policy=self.name,
            policy_version=self.policy_version,
            choices=choices,
            explored=index != argmax(pmf),
            distribution=[
                PlanProbability(plan=plan, probability=min(1.0, max(0.0, p)))
                for plan, p in zip(plans, pmf, strict=True)
            ],
            action_history=history,
        )

    def learn(self, context: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        """Learn the plan drawn and every plan it dominates (no strategy larger): their rewards
        are known too, each learned with the probability of drawing a plan that dominates it,
        on the action features logged with the decision. A decision logged without its PMF
        (before ltrr-os logged it) teaches only the plan drawn, with its probability. A plan
        that is not one of the logged plans (another policy's) or in which a strategy failed
        teaches nothing."""
        plan = decision.plan
        if not plan:
            return
        if decision.distribution:
            plans = [option.plan for option in decision.distribution]
            pmf: list[float] | None = [option.probability for option in decision.distribution]
        else:
            plans, pmf = self.plans(context), None
        hits = _hits(plan, outcome)
        if plan not in plans or hits is None:
            return
        shared = "shared " + context_features(context)
        query_type = context.query.features.query_type
        if pmf is None:
            taught = [(plans.index(plan), decision.probability)]
        else:
            taught = [
                (i, sum(p for other, p in zip(plans, pmf, strict=True) if _covers(other, q)))
                for i, q in enumerate(plans)
                if _covers(plan, q)
            ]
        with self._lock:
            history = decision.action_history or self._history(context)
            actions = self._actions(context, plans, history)
            for index, probability in taught:
                candidate = plans[index]
                found = [w for s, (rank, w) in hits.items() if rank <= candidate.get(s, 0)]
                cost = self._cost(max(found, default=0.0), bool(found), sum(candidate.values()))
                labelled = list(actions)
                labelled[index] = f"0:{cost:.6g}:{probability:.6g} {actions[index]}"
                self._vw.learn([shared, *labelled])
            for strategy in plan:
                result = outcome.strategies[strategy]
                self.history.record(query_type, strategy, strategy in hits, result.candidates)
            self.updates += 1

    def logged_round(
        self, context: DecisionContext, decision: Decision, outcome: Outcome
    ) -> LoggedRound | None:
        """A logged decision as an off-policy round: the plan drawn, its logged probability,
        the reward this policy learns on and the logged PMF (the target's PMF comes from
        `with_target`). None when the decision logged no PMF or teaches nothing."""
        plan = decision.plan
        logged = {_key(option.plan): option.probability for option in decision.distribution}
        hits = _hits(plan, outcome)
        if not plan or hits is None or logged.get(_key(plan), 0.0) <= 0:
            return None
        found = [weight for _, weight in hits.values()]
        return LoggedRound(
            context=context.query.features.query_type,
            action=_key(plan),
            propensity=logged[_key(plan)],
            reward=-self._cost(max(found, default=0.0), bool(found), sum(plan.values())),
            target={},
            logging=logged,
        )

    def with_target(self, context: DecisionContext, logged: LoggedRound) -> LoggedRound:
        """The round with this policy's PMF over plans for its context as the target. It
        predicts, which moves an exploration schedule: judge with a copy, not the policy
        that learns."""
        target: dict[tuple[tuple[str, int], ...], float] = {}
        for option in self.decide(context).distribution:
            target[_key(option.plan)] = target.get(_key(option.plan), 0.0) + option.probability
        return replace(logged, target=target)


def _key(plan: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((s, n) for s, n in plan.items() if n > 0))


def _hits(plan: Mapping[str, int], outcome: Outcome) -> dict[str, tuple[int, float]] | None:
    """Per strategy of the plan that found an engaged item within its size: (its rank, the
    engagement's weight). None when a strategy of the plan failed or has no outcome: then the
    search teaches nothing about the plan."""
    results = {strategy: outcome.strategies.get(strategy) for strategy in plan}
    if any(result is None or result.failed for result in results.values()):
        return None
    return {
        strategy: (r.hit_rank, r.engagement_weight)
        for strategy, r in results.items()
        if r is not None
        and r.engagement_weight > 0
        and r.hit_rank is not None
        and r.hit_rank <= r.size
    }


def _covers(plan: dict[str, int], other: dict[str, int]) -> bool:
    """Whether `plan` draws at least as much as `other` from every strategy."""
    return all(plan.get(strategy, 0) >= size for strategy, size in other.items())


def new_default_policy(cost_per_candidate: float = DEFAULT_COST_PER_CANDIDATE) -> PlanBandit:
    """The learned policy a new deployment starts with: the joint formulation with SquareCB
    (see scripts/bench_policy.py and the module docstring for why)."""
    return PlanBandit(
        PlanBanditConfig(
            name=DEFAULT_POLICY_NAME,
            exploration="squarecb",
            cost_per_candidate=cost_per_candidate,
        )
    )
