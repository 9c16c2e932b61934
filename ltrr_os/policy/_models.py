"""What a retrieval policy sees, what it decides, and what it learns from.

A decision is a retrieval plan: for each strategy that applies to the query, how many candidates
to draw from it (0 = do not run it), each chosen with a logged probability so that the logs
support off-policy evaluation.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, computed_field, model_validator

from ..understanding import UnderstoodQuery
from ._budget import cap_to_budget

SIZE_LEVELS: tuple[int, ...] = (0, 10, 30, 100)
"""The candidate counts a learned policy chooses from, per strategy."""

ENGAGEMENT_WEIGHTS: dict[str, float] = {
    "playback": 1.0,
    "add_to_favorites": 0.8,
    "click": 0.5,
}
"""How much each engagement says the user wanted the item (impressions and skips say nothing)."""


class StrategyOption(BaseModel):
    """A strategy the policy may run for this query."""

    strategy: str
    source_type: str
    applicable: bool = Field(description="False when the strategy has nothing to run (no slots...)")


class UserProfile(BaseModel):
    """Aggregates of what a user engaged with before: genre (or any slot value) affinities."""

    user_id: str | None = None
    affinities: dict[str, float] = Field(
        default_factory=dict, description="'slot=value' -> share of the user's engagements"
    )
    engagements: int = 0
    taste: list[float] | None = Field(
        default=None,
        exclude=True,  # what the personal strategy searches with; never logged with decisions
        description="unit vector of what the user engaged with (recent engagements weigh "
        "more); None without history",
    )


class TimeContext(BaseModel):
    day_of_week: int = Field(ge=0, le=6, description="0 = Monday")
    weekend: bool
    hour_bucket: str = Field(description="night (0-5), morning (6-11), afternoon (12-17), evening")
    holiday_season: bool = Field(description="15 December to 6 January")

    @classmethod
    def at(cls, moment: datetime) -> TimeContext:
        hour = moment.hour
        bucket = (
            "night"
            if hour < 6
            else "morning"
            if hour < 12
            else "afternoon"
            if hour < 18
            else "evening"
        )
        holiday = (moment.month == 12 and moment.day >= 15) or (
            moment.month == 1 and moment.day <= 6
        )
        return cls(
            day_of_week=moment.weekday(),
            weekend=moment.weekday() >= 5,
            hour_bucket=bucket,
            holiday_season=holiday,
        )


class DecisionContext(BaseModel):
    """Everything known before retrieval: the understood query, the user, the time, the options
    and the budget. It is logged with the decision so that replay can learn from it again."""

    query: UnderstoodQuery
    user: UserProfile = Field(default_factory=UserProfile)
    time: TimeContext
    options: list[StrategyOption]
    budget: int = Field(default=400, ge=0, description="most candidates the plan may draw in all")


class StrategyChoice(BaseModel):
    strategy: str
    size: int = Field(ge=0)
    probability: float = Field(gt=0, le=1, description="probability this size was chosen")


class PlanProbability(BaseModel):
    """One plan the policy could have run, and the probability it had of being drawn."""

    plan: dict[str, int]
    probability: float = Field(ge=0, le=1)


class Decision(BaseModel):
    """A retrieval plan with the probabilities it was chosen with, and everything the policy
    needs to learn from it later in another process: the distribution it was drawn from and
    the action features it was scored with (the logs are the learner's only input)."""

    policy: str
    policy_version: str = "static"
    choices: list[StrategyChoice] = Field(description="the strategies that run, with sizes")
    skipped: list[StrategyChoice] = Field(
        default_factory=list,
        description="the strategies the policy decided not to run (size 0), each with the "
        "probability of that decision: part of the plan's probability",
    )
    explored: bool = Field(default=False, description="a choice was not the policy's best guess")
    distribution: list[PlanProbability] = Field(
        default_factory=list,
        description="every plan the policy could have run, with its probability (plan "
        "bandits and static policies; the per-strategy bandit logs `size_distributions`)",
    )
    size_distributions: dict[str, list[float]] = Field(
        default_factory=dict,
        description="per-strategy bandit: each applicable strategy's PMF over SIZE_LEVELS",
    )
    drawn_sizes: dict[str, int] = Field(
        default_factory=dict,
        description="per-strategy bandit: the size drawn per strategy, before the budget cut",
    )
    action_history: dict[str, tuple[str, str]] = Field(
        default_factory=dict,
        description="learned policies: each strategy's record (hit rate, result count buckets) "
        "as the action features were built from it at decision time",
    )

    @model_validator(mode="after")
    def _skipped_apart(self) -> Decision:
        """A size-0 choice is a decision not to run: it goes to `skipped`, so `choices` is
        what ran (policies build one list; decisions logged before the split load the same)."""
        if any(choice.size == 0 for choice in self.choices):
            self.skipped = [*self.skipped, *(c for c in self.choices if c.size == 0)]
            self.choices = [c for c in self.choices if c.size > 0]
        return self

    @property
    def every_choice(self) -> list[StrategyChoice]:
        """What ran and what was decided against: every strategy the policy decided on."""
        return [*self.choices, *self.skipped]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def probability(self) -> float:
        """Probability of the whole plan: the product of every choice's probability (run or
        skipped), each conditional on the choices before it (independent draws for
        per-strategy decisions)."""
        return math.prod(choice.probability for choice in self.every_choice)

    @property
    def plan(self) -> dict[str, int]:
        """Strategy -> candidates to draw, for the strategies that run."""
        return {c.strategy: c.size for c in self.choices}

    @property
    def candidate_cost(self) -> int:
        return sum(choice.size for choice in self.choices)

    def probability_of(self, plan: Mapping[str, int], budget: int) -> float | None:
        """The probability that this decision would have run `plan` (strategies with size 0
        left out), from the logged distribution; None when the decision logged none (then only
        its own plan is known, with `probability`)."""
        wanted = {s: n for s, n in plan.items() if n > 0}
        if self.distribution:
            return sum(
                option.probability
                for option in self.distribution
                if {s: n for s, n in option.plan.items() if n > 0} == wanted
            )
        if self.size_distributions:
            return _cut_plan_probability(self.size_distributions, wanted, budget)
        return None


def _cut_plan_probability(
    pmfs: Mapping[str, list[float]], wanted: Mapping[str, int], budget: int
) -> float:
    """P(cap_to_budget(drawn sizes) == wanted) under independent per-strategy PMFs."""
    if set(wanted) - set(pmfs):
        return 0.0
    names = list(pmfs)
    total = 0.0
    levels = [
        [(size, p) for size, p in zip(SIZE_LEVELS, pmfs[name], strict=False) if p > 0]
        for name in names
    ]
    for combination in itertools.product(*levels):
        sizes = {name: size for name, (size, _) in zip(names, combination, strict=True)}
        ran = {s: n for s, n in cap_to_budget(sizes, budget).items() if n > 0}
        if ran == dict(wanted):
            total += math.prod(p for _, p in combination)
    return total


class StrategyOutcome(BaseModel):
    """What one chosen strategy achieved for the item(s) the user engaged with."""

    strategy: str
    size: int
    hit_rank: int | None = Field(
        default=None,
        ge=1,
        description="1-based rank of the best-ranked engaged item in its list, None if absent",
    )
    engagement_weight: float = Field(default=0.0, ge=0, le=1)
    candidates: int = 0
    failed: bool = Field(default=False, description="errored or timed out: no lesson to learn")


class Outcome(BaseModel):
    """The settled result of one search whose results were shown: per-strategy outcomes and
    whether anything was engaged (the learning rules never make one for a search not shown)."""

    strategies: dict[str, StrategyOutcome]
    engaged: bool


class Policy(ABC):
    """Decides retrieval plans (pull) and learns from their outcomes (update)."""

    name: str

    @abstractmethod
    def decide(self, context: DecisionContext) -> Decision:
        """The plan for one search."""

    def learn(self, context: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        """Learn from a settled search; static policies ignore it."""
        del context, decision, outcome

    def save(self, directory: Path) -> Path | None:
        """Persist learned state atomically as a new version; static policies have none."""
        del directory
        return None
