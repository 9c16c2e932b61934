"""A synthetic search population whose answers are known, to check that a policy learns and to
compare policies without OpenSearch.

Each search wants one item. Per query type, each strategy has it in its list with some chance,
at a rank drawn uniformly down to a depth (FINDS): known items sit near the top of the lexical
and memory lists; topical queries need vector search at depth 100; attribute queries need
structured search at depth 30. Query understanding is imperfect (the logged query type is wrong
one time in ten), the user and the time are noise, strategies fail now and then, and the budget
(200) is below the five strategies at 100, as a latency budget would be."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..understanding import QueryFeatures, Reading, SlotMatch, UnderstoodQuery
from ..understanding._models import QueryType
from ._models import (
    ENGAGEMENT_WEIGHTS,
    Decision,
    DecisionContext,
    Outcome,
    Policy,
    StrategyOption,
    StrategyOutcome,
    TimeContext,
    UserProfile,
)

QUERY_TYPES: tuple[QueryType, ...] = ("known_item", "topical", "attribute")
SOURCES = {s: s for s in ("lexical", "structured", "vector", "memory", "exploration")}
FINDS: dict[QueryType, dict[str, tuple[float, int]]] = {
    "known_item": {
        "lexical": (0.9, 5),
        "memory": (0.6, 3),
        "vector": (0.5, 50),
        "structured": (0.2, 100),
        "exploration": (0.02, 100),
    },
    "topical": {
        "vector": (0.85, 100),
        "lexical": (0.25, 100),
        "memory": (0.3, 30),
        "structured": (0.15, 100),
        "exploration": (0.05, 100),
    },
    "attribute": {
        "structured": (0.85, 30),
        "vector": (0.4, 100),
        "lexical": (0.2, 100),
        "memory": (0.25, 30),
        "exploration": (0.05, 100),
    },
}
"""Query type -> strategy -> (chance the wanted item is in its list, deepest rank it can have)."""
ENGAGEMENT_MIX = {"playback": 0.6, "add_to_favorites": 0.1, "click": 0.3}
_SLOTS = {
    "genre": ["rock", "pop", "jazz", "hip hop"],
    "era": ["1970s", "1980s", "1990s"],
    "mood": ["chill", "happy"],
    "artist": ["Queen", "Taylor Swift"],
    "entity_type": ["track", "album"],
}
_SLOTS_BY_TYPE: dict[QueryType, tuple[str, ...]] = {
    "known_item": ("artist",),
    "topical": ("mood",),
    "attribute": ("genre", "era", "entity_type"),
}


@dataclass(frozen=True)
class Search:
    """One search: what the policy sees and, hidden from it, where the wanted item is."""

    context: DecisionContext
    ranks: dict[str, int | None]
    failed: frozenset[str]
    weight: float

    def outcome(self, decision: Decision) -> Outcome:
        """What the user did with the union of what the plan retrieved."""
        hits: dict[str, int | None] = {}
        for strategy, size in decision.plan.items():
            rank = self.ranks.get(strategy)
            found = strategy not in self.failed and rank is not None and rank <= size
            hits[strategy] = rank if found else None
        engaged = any(rank is not None for rank in hits.values())
        return Outcome(
            strategies={
                strategy: StrategyOutcome(
                    strategy=strategy,
                    size=size,
                    hit_rank=hits[strategy],
                    engagement_weight=self.weight if hits[strategy] is not None else 0.0,
                    candidates=0 if strategy in self.failed else size,
                    failed=strategy in self.failed,
                )
                for strategy, size in decision.plan.items()
            },
            engaged=engaged,
        )


class SyntheticEnvironment:
    """A seeded stream of searches; the same seed gives every policy the same stream."""

    def __init__(
        self, seed: int = 0, budget: int = 200, failure_rate: float = 0.01, type_noise: float = 0.1
    ) -> None:
        self._rng = random.Random(seed)
        self.budget = budget
        self.failure_rate = failure_rate
        self.type_noise = type_noise
        self._users = [self._user(i) for i in range(200)]
        self._start = datetime(2024, 1, 1)

    def _user(self, number: int) -> UserProfile:
        rng = self._rng
        keys = [f"{slot}={value}" for slot in ("genre", "era") for value in _SLOTS[slot]]
        picked = rng.sample(keys, rng.randint(0, 5))
        total = sum(weights := [rng.random() + 0.1 for _ in picked]) or 1.0
        return UserProfile(
            user_id=f"u{number}",
            affinities={k: w / total for k, w in zip(picked, weights, strict=True)},
            engagements=rng.choice([0, 3, 20, 300]),
        )

    def search(self) -> Search:
        rng = self._rng
        truth = rng.choice(QUERY_TYPES)
        logged = rng.choice(QUERY_TYPES) if rng.random() < self.type_noise else truth
        ranks = {
            strategy: rng.randint(1, depth) if rng.random() < chance else None
            for strategy, (chance, depth) in FINDS[truth].items()
        }
        failed = frozenset(s for s in SOURCES if rng.random() < self.failure_rate)
        weight = ENGAGEMENT_WEIGHTS[
            rng.choices(list(ENGAGEMENT_MIX), weights=list(ENGAGEMENT_MIX.values()))[0]
        ]
        moment = self._start + timedelta(minutes=rng.randrange(366 * 24 * 60))
        context = DecisionContext(
            query=self._query(logged),
            user=rng.choice(self._users),
            time=TimeContext.at(moment),
            options=[
                StrategyOption(strategy=s, source_type=t, applicable=True)
                for s, t in SOURCES.items()
            ],
            budget=self.budget,
        )
        return Search(context=context, ranks=ranks, failed=failed, weight=weight)

    def _query(self, query_type: QueryType) -> UnderstoodQuery:
        rng = self._rng
        length = {"known_item": (2, 4), "topical": (4, 9), "attribute": (1, 3)}[query_type]
        words = [f"w{rng.randrange(1000)}" for _ in range(rng.randint(*length))]
        slots = [
            SlotMatch(
                slot=slot,
                value=rng.choice(_SLOTS[slot]),
                confidence=rng.uniform(0.5, 1.0),
                start=0,
                end=1,
                matched=words[0],
                fuzzy=rng.random() < 0.1,
            )
            for slot in _SLOTS_BY_TYPE[query_type]
            if rng.random() < 0.6
        ]
        main = rng.uniform(0.5, 0.9)
        scores: dict[str, float] = {
            t: main if t == query_type else (1 - main) / 2 for t in QUERY_TYPES
        }
        return UnderstoodQuery(
            text=" ".join(words),
            normalized=" ".join(words),
            tokens=words,
            features=QueryFeatures(
                length_chars=sum(len(w) + 1 for w in words),
                length_tokens=len(words),
                script="latin",
                language=rng.choice(["en", "en", "de", "es"]),
                has_numerals=rng.random() < 0.1,
                has_year=rng.random() < 0.05,
                typo_likelihood=rng.choice([0.0, 0.0, 0.1, 0.4]),
                query_type=query_type,
                query_type_scores=scores,
            ),
            readings=[Reading(slots=slots, residual=" ".join(words[1:]), likelihood=main)],
            memory_keys=[" ".join(words)][: rng.randint(0, 1)] + (["k"] if slots else []),
        )


@dataclass(frozen=True)
class RoundResult:
    """One round: whether the wanted item was found, its engagement weight (0 if not found), the
    candidates drawn and whether the policy explored."""

    hit: bool
    weight: float
    candidates: int
    explored: bool

    def reward(self, cost_per_candidate: float = 0.002) -> float:
        """The plan bandit's reward: what the search found, less what it drew."""
        return self.weight - cost_per_candidate * self.candidates


def simulate(policy: Policy, environment: SyntheticEnvironment, rounds: int) -> list[RoundResult]:
    """Decide, observe and learn, round after round."""
    results = []
    for _ in range(rounds):
        search = environment.search()
        decision = policy.decide(search.context)
        outcome = search.outcome(decision)
        policy.learn(search.context, decision, outcome)
        weight = search.weight if outcome.engaged else 0.0
        results.append(
            RoundResult(outcome.engaged, weight, decision.candidate_cost, decision.explored)
        )
    return results
