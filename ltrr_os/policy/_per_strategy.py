"""PerStrategyBandit: the factored formulation. Each applicable strategy is one contextual bandit
decision over SIZE_LEVELS; all decisions share one VW model, the strategy being an action
feature that interacts with the context.

Reward of a strategy at size n: the engagement weight if the engaged item was in its first n
results, minus cost_per_candidate * n.

Learning from the sizes not drawn. A strategy's list at size m is the first m results of its
list at any larger size, so one search reveals more than the size it drew: a miss at size d
says how every level <= d would have done, and a hit at rank r says every level >= r would
have hit too. Level m is revealed exactly when the size drawn reaches min(m, r) (r = infinity
on a miss), so it is learned with the probability of that event, P(size >= min(m, r)), summed
from the PMF the size was drawn from: importance weighting stays unbiased although which levels
are revealed depends on the outcome, and exploration keeps every probability above 0.

That needs the full PMF, so every decision logs it (with the size drawn before any budget cut);
a decision logged without it (another policy's, or from before ltrr-os logged it) teaches the
levels up to the size drawn when it was deterministic (they were revealed whatever the
outcome), else only the size drawn, with its logged probability.

A size the budget cut (drawn 100, ran 40) reveals the levels up to what ran, never above (their
misses could not be seen while the budget binds), and teaches the size drawn what it actually
got: the results and the cost of what ran. The reveal probabilities ignore the cut, which is
approximate only while the budget binds.

Measured (scripts/bench_policy.py): it learns recall fastest, but draws about twice the
candidates the plan bandit does for a few points more recall, because a strategy is rewarded for
its own hit even when another strategy in the plan found the same item. PlanBandit is the
default for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vowpalwabbit import Workspace

from ._budget import cap_to_budget
from ._features import context_features, strategy_action
from ._models import (
    SIZE_LEVELS,
    Decision,
    DecisionContext,
    Outcome,
    StrategyChoice,
    StrategyOption,
    StrategyOutcome,
)
from ._vw import BanditConfig, VWBandit, argmax, sample


@dataclass(frozen=True)
class Lesson:
    """Level `level` would have run `size` candidates; learned with this probability."""

    level: int
    size: int
    probability: float


def lessons(
    ran: int,
    hit_rank: int | None,
    probability: float,
    pmf: Sequence[float] | None = None,
    drawn: int | None = None,
) -> list[Lesson]:
    """What one strategy's outcome teaches (see the module docstring).

    `ran`: the size that ran; `probability`: its logged probability; `pmf` and `drawn`: the
    distribution over SIZE_LEVELS and the level drawn from it, when the policy remembers them."""
    if pmf is None:
        if probability >= 1.0:
            return [Lesson(level, level, 1.0) for level in SIZE_LEVELS if level <= ran]
        return [Lesson(ran, ran, probability)] if ran in SIZE_LEVELS else []
    found = []
    cut = drawn is not None and drawn > ran
    for level, mass in zip(SIZE_LEVELS, pmf, strict=True):
        if level > ran and (hit_rank is None or cut):
            if cut and level == drawn:
                found.append(Lesson(level, ran, mass))
            continue
        threshold = level if hit_rank is None else min(level, hit_rank)
        chance = sum(p for size, p in zip(SIZE_LEVELS, pmf, strict=True) if size >= threshold)
        found.append(Lesson(level, level, chance))
    return [lesson for lesson in found if lesson.probability > 0]


def _hit_rank(result: StrategyOutcome | None) -> int | None:
    """The rank of the engaged item if it was within what the strategy drew."""
    if result is None or result.hit_rank is None or result.engagement_weight <= 0:
        return None
    return result.hit_rank if result.hit_rank <= result.size else None


class PerStrategyBandit(VWBandit):
    """One size decision per applicable strategy; see the module docstring."""

    kind = "per_strategy"

    def __init__(self, config: BanditConfig | None = None, workspace: Workspace | None = None):
        super().__init__(config or BanditConfig(name="per-strategy"), workspace)

    @staticmethod
    def _actions(option: StrategyOption, record: tuple[str, str]) -> list[str]:
        return [
            strategy_action(option.strategy, option.source_type, n, record) for n in SIZE_LEVELS
        ]

    def decide(self, context: DecisionContext) -> Decision:
        """Each size drawn from its PMF, then cut largest first if the plan exceeds the budget
        (probabilities stay those of the sizes drawn). The PMFs, the sizes drawn and the
        history the action features came from are logged with the decision."""
        shared = "shared " + context_features(context)
        query_type = context.query.features.query_type
        drawn: dict[str, int] = {}
        probabilities: dict[str, float] = {}
        pmfs: dict[str, list[float]] = {}
        history: dict[str, tuple[str, str]] = {}
        explored = False
        with self._lock:
            for option in context.options:
                if not option.applicable:
                    drawn[option.strategy], probabilities[option.strategy] = 0, 1.0
                    continue
                record = history[option.strategy] = self.history.buckets(
                    query_type, option.strategy
                )
                pmf = self._vw.predict([shared, *self._actions(option, record)])
                index = sample(pmf, self._rng)
                explored = explored or index != argmax(pmf)
                drawn[option.strategy] = SIZE_LEVELS[index]
                probabilities[option.strategy] = min(1.0, pmf[index])
                pmfs[option.strategy] = [min(1.0, max(0.0, p)) for p in pmf]
        choices = [
            StrategyChoice(strategy=s, size=n, probability=probabilities[s])
            for s, n in cap_to_budget(drawn, context.budget).items()
        ]
        return Decision(
            policy=self.name,
            policy_version=self.policy_version,
            choices=choices,
            explored=explored,
            size_distributions=pmfs,
            drawn_sizes={s: n for s, n in drawn.items() if s in pmfs},
            action_history=history,
        )

    def learn(self, context: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        """Learn every size the outcome teaches, per strategy, on the logged PMFs and action
        features. A failed strategy teaches nothing, nor does a search whose every strategy
        failed."""
        shared = "shared " + context_features(context)
        query_type = context.query.features.query_type
        chosen = {choice.strategy: choice for choice in decision.every_choice}
        applicable = [option for option in context.options if option.applicable]
        tried = [outcome.strategies.get(strategy) for strategy in decision.plan]
        if tried and all(result is None or result.failed for result in tried):
            return  # nothing was retrieved, so nothing was shown: no lesson at all
        learned = False
        with self._lock:
            for option in applicable:
                choice = chosen.get(option.strategy)
                result = outcome.strategies.get(option.strategy)
                if choice is None or (choice.size > 0 and (result is None or result.failed)):
                    continue
                ran = result.size if result is not None else 0
                hit_rank = _hit_rank(result)
                pmf = decision.size_distributions.get(option.strategy)
                drawn = decision.drawn_sizes.get(option.strategy)
                if pmf is None or drawn is None or len(pmf) != len(SIZE_LEVELS):
                    taught = lessons(ran, hit_rank, choice.probability)
                else:
                    taught = lessons(ran, hit_rank, choice.probability, pmf, drawn)
                weight = result.engagement_weight if result is not None else 0.0
                record = decision.action_history.get(option.strategy) or self.history.buckets(
                    query_type, option.strategy
                )
                actions = self._actions(option, record)
                for lesson in taught:
                    hit = hit_rank is not None and hit_rank <= lesson.size
                    cost = self._cost(weight, hit, lesson.size)
                    at = SIZE_LEVELS.index(lesson.level)
                    labelled = list(actions)
                    labelled[at] = f"0:{cost:.6g}:{lesson.probability:.6g} {actions[at]}"
                    self._vw.learn([shared, *labelled])
                    learned = True
                if result is not None and ran > 0:
                    found = hit_rank is not None
                    self.history.record(query_type, option.strategy, found, result.candidates)
            self.updates += learned
