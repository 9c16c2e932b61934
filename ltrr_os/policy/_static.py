"""Static policies: the references a learned policy is measured against, and the fallback when no
learned policy can be loaded. Every choice has probability 1."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import NonNegativeInt, TypeAdapter

from ..understanding._models import QueryType
from ._budget import scale_to_budget
from ._models import Decision, DecisionContext, PlanProbability, Policy, StrategyChoice

DEFAULT_RULES: dict[QueryType, dict[str, int]] = {
    # A named item: exact words and past engagement find it near the top; attributes may help.
    # A name may want what the named entity leads to (an artist's tracks): a few related.
    "known_item": {"lexical": 30, "memory": 30, "structured": 10, "related": 10},
    # A description: semantic similarity needs depth; words and memory add a few sure hits,
    # the user's taste a few more.
    "topical": {"vector": 100, "lexical": 30, "memory": 10, "personal": 10},
    # Slots such as genre or era: structured search is the answer, similarity widens it, taste
    # picks within it, and a few new entities get their chance.
    "attribute": {"structured": 100, "vector": 30, "memory": 10, "personal": 10, "fresh": 10},
}
"""RulePolicy's plans per query type."""
EVERY_STRATEGY = "*"
"""In a plan, the size of every applicable strategy the plan does not name."""

_PLAN = TypeAdapter(dict[str, NonNegativeInt])
_RULES = TypeAdapter(dict[QueryType, dict[str, NonNegativeInt]])


def _decide(name: str, wanted: Mapping[str, int], context: DecisionContext) -> Decision:
    """The plan restricted to applicable options and scaled into the budget."""
    default = wanted.get(EVERY_STRATEGY, 0)
    sizes = {
        option.strategy: wanted.get(option.strategy, default) if option.applicable else 0
        for option in context.options
    }
    sizes = scale_to_budget(sizes, context.budget)
    return Decision(
        policy=name,
        choices=[
            StrategyChoice(strategy=strategy, size=size, probability=1.0)
            for strategy, size in sizes.items()
        ],
        distribution=[
            PlanProbability(plan={s: n for s, n in sizes.items() if n > 0}, probability=1.0)
        ],
    )


class FixedPlanPolicy(Policy):
    """The same plan for every query; {"*": 100} (all strategies at 100) is the max-recall
    reference."""

    def __init__(self, sizes: Mapping[str, int], name: str = "fixed-plan") -> None:
        self.sizes = _PLAN.validate_python(dict(sizes))
        self.name = name

    def decide(self, context: DecisionContext) -> Decision:
        return _decide(self.name, self.sizes, context)


class SingleStrategyPolicy(FixedPlanPolicy):
    """One strategy only: what each strategy achieves on its own."""

    def __init__(self, strategy: str, size: int = 100) -> None:
        super().__init__({strategy: size}, name=f"single-{strategy}")


class RulePolicy(Policy):
    """A hand-written plan per query type; `rules` replaces the defaults of the types it names."""

    name = "rules"

    def __init__(self, rules: Mapping[QueryType, Mapping[str, int]] | None = None) -> None:
        given = _RULES.validate_python({k: dict(v) for k, v in (rules or {}).items()})
        self.rules: dict[QueryType, dict[str, int]] = {**DEFAULT_RULES, **given}

    def decide(self, context: DecisionContext) -> Decision:
        return _decide(self.name, self.rules[context.query.features.query_type], context)
