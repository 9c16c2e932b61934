"""Off-policy estimates of a target policy's value from logs of another (stochastic) policy:
inverse propensity scoring (IPS), its self-normalised form (SNIPS) and the doubly robust
estimator (DR), as pure functions over logged (context key, logged action, propensity, reward,
target action) rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class LoggedRound:
    """One logged decision and what the target policy would have done in its place."""

    context: Hashable
    action: Hashable
    propensity: float
    reward: float
    target_action: Hashable


class OffPolicyEstimate(BaseModel):
    ips: float
    snips: float
    dr: float
    matches: int
    rounds: int


def estimate(rounds: Sequence[LoggedRound]) -> OffPolicyEstimate:
    """IPS, SNIPS and DR of a deterministic target policy. DR's reward model is the logged mean
    reward per (context, action), falling back to the action's mean, then to the overall mean."""
    if not rounds:
        return OffPolicyEstimate(ips=0.0, snips=0.0, dr=0.0, matches=0, rounds=0)
    by_pair: dict[tuple[Hashable, Hashable], list[float]] = defaultdict(list)
    by_action: dict[Hashable, list[float]] = defaultdict(list)
    for r in rounds:
        by_pair[(r.context, r.action)].append(r.reward)
        by_action[r.action].append(r.reward)
    overall = sum(r.reward for r in rounds) / len(rounds)

    def model(context: Hashable, action: Hashable) -> float:
        values = by_pair.get((context, action)) or by_action.get(action)
        return sum(values) / len(values) if values else overall

    ips_terms, weights, dr_terms = [], [], []
    matches = 0
    for r in rounds:
        match = r.action == r.target_action
        matches += match
        weight = (1.0 / r.propensity) if match else 0.0
        ips_terms.append(weight * r.reward)
        weights.append(weight)
        predicted = model(r.context, r.target_action)
        dr_terms.append(predicted + weight * (r.reward - model(r.context, r.action)))
    n = len(rounds)
    total_weight = sum(weights)
    return OffPolicyEstimate(
        ips=sum(ips_terms) / n,
        snips=sum(ips_terms) / total_weight if total_weight else 0.0,
        dr=sum(dr_terms) / n,
        matches=matches,
        rounds=n,
    )
