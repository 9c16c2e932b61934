"""Off-policy estimates: what a target policy would have earned, from the logs of another
(stochastic) policy, in the style of Open Bandit Pipeline (its design, not its code).

Each logged round gives the context key, the action taken, its reward, the logging policy's
probability of that action and, when logged, of every other action (so a target whose action
was never drawn can still be judged to have support or not), and the target policy's
distribution. Per-round values are computed first; every estimator is a mean of them, and its
95% interval is a bootstrap over rounds:

- IPS: w_i r_i, with w_i = pi_target(a_i) / pi_logging(a_i), clipped at `clip`;
- SNIPS: IPS divided by the mean weight (self-normalised: less variance, a little bias);
- DR: the reward model's value of the target's distribution plus the weighted residual of the
  logged action; the reward model (mean reward per context and action, backing off to the
  action, then to all) is cross-fitted: each round is scored by a model fitted on the other
  folds, never on itself.

"No support" replaces a number when no logged action had target probability (the logs never
chose what the target does). The effective sample size (sum w)^2 / sum w^2 says how many rounds
the estimate really rests on. The mean weight must be about 1 when the logged probabilities are
right: an interval that excludes 1 flags them as wrong.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

CLIP = 100.0
BOOTSTRAP = 300


@dataclass(frozen=True)
class LoggedRound:
    """One logged decision, its reward, and what the target policy would have done."""

    context: Hashable
    action: Hashable
    propensity: float
    reward: float
    target: Mapping[Any, float]
    logging: Mapping[Any, float] | None = None


class Interval(BaseModel):
    value: float | None = Field(description="None: no support in the logs")
    low: float | None = None
    high: float | None = None


class OffPolicyEstimate(BaseModel):
    ips: Interval
    snips: Interval
    dr: Interval
    rounds: int
    matches: int = Field(description="rounds whose logged action the target would also take")
    effective_sample_size: float
    mean_weight: Interval = Field(description="unclipped: about 1 under full support")
    propensities_suspect: bool = Field(
        default=False,
        description="the mean weight's interval excludes what the logged probabilities promise",
    )
    clip: float = CLIP


def _interval(value: float, estimates: npt.NDArray[np.float64]) -> Interval:
    low, high = np.quantile(estimates, [0.025, 0.975])
    return Interval(value=round(value, 6), low=round(float(low), 6), high=round(float(high), 6))


def _reward_model(
    rounds: Sequence[LoggedRound], members: Sequence[int]
) -> Callable[[Hashable, Hashable], float]:
    """Mean reward per (context, action), else per action, else overall, fitted on `members`."""
    by_pair: dict[tuple[Hashable, Hashable], list[float]] = defaultdict(list)
    by_action: dict[Hashable, list[float]] = defaultdict(list)
    for i in members:
        r = rounds[i]
        by_pair[(r.context, r.action)].append(r.reward)
        by_action[r.action].append(r.reward)
    overall = statistics.fmean(rounds[i].reward for i in members) if members else 0.0

    def predict(context: Hashable, action: Hashable) -> float:
        found = by_pair.get((context, action)) or by_action.get(action)
        return statistics.fmean(found) if found else overall

    return predict


def estimate(
    rounds: Sequence[LoggedRound],
    *,
    clip: float = CLIP,
    folds: int = 2,
    draws: int = BOOTSTRAP,
    seed: int = 0,
) -> OffPolicyEstimate:
    """IPS, SNIPS and DR of the target, with bootstrap 95% intervals (see the module)."""
    n = len(rounds)
    weights = [min(r.target.get(r.action, 0.0) / r.propensity, clip) for r in rounds]
    matches = sum(w > 0 for w in weights)
    total = sum(weights)
    ess = total**2 / sum(w * w for w in weights) if matches else 0.0
    if n == 0 or matches == 0:
        none = Interval(value=None)
        return OffPolicyEstimate(
            ips=none,
            snips=none,
            dr=none,
            rounds=n,
            matches=0,
            effective_sample_size=0.0,
            mean_weight=Interval(value=total / n if n else None),
            clip=clip,
        )
    ips = [w * r.reward for w, r in zip(weights, rounds, strict=True)]
    order = list(range(n))
    random.Random(seed).shuffle(order)
    fold_of = {i: k % folds for k, i in enumerate(order)}
    models = [
        _reward_model(rounds, [i for i in range(n) if fold_of[i] != fold]) for fold in range(folds)
    ]
    dr = []
    for i, (weight, r) in enumerate(zip(weights, rounds, strict=True)):
        model = models[fold_of[i]]
        baseline = sum(p * model(r.context, a) for a, p in r.target.items())
        dr.append(baseline + weight * (r.reward - model(r.context, r.action)))

    # Every estimator over the same bootstrap resamples of the rounds.
    samples = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    w, v, d = np.asarray(weights), np.asarray(ips), np.asarray(dr, dtype=np.float64)
    raw = np.asarray([r.target.get(r.action, 0.0) / r.propensity for r in rounds])
    mass = w[samples].sum(axis=1)
    snips = np.divide(v[samples].sum(axis=1), mass, out=np.zeros(draws), where=mass > 0)
    weight_interval = _interval(float(raw.mean()), raw[samples].mean(axis=1))
    # The mean unclipped weight estimates the target's mass on actions the logging policy
    # could take: 1 under full support, less where the logs show it could not.
    expected = statistics.fmean(
        1.0
        if r.logging is None
        else sum(p for a, p in r.target.items() if r.logging.get(a, 0.0) > 0)
        for r in rounds
    )
    suspect = not (
        weight_interval.low is not None
        and weight_interval.high is not None
        and weight_interval.low <= expected <= weight_interval.high
    )
    return OffPolicyEstimate(
        ips=_interval(float(v.mean()), v[samples].mean(axis=1)),
        snips=_interval(float(v.sum() / w.sum()), snips),
        dr=_interval(float(d.mean()), d[samples].mean(axis=1)),
        rounds=n,
        matches=matches,
        effective_sample_size=round(ess, 1),
        mean_weight=weight_interval,
        propensities_suspect=suspect,
        clip=clip,
    )
