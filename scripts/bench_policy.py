"""Benchmark the retrieval policies without OpenSearch: decision latency, learning throughput, and
learning on the synthetic environment (ltrr_os.policy.SyntheticEnvironment).

    .venv/bin/python scripts/bench_policy.py [--rounds 5000] [--seeds 3]

Learning figures are means over the seeds; each seed gives every policy the same searches. The
reward is the plan bandit's: the engagement weight of a found item minus 0.002 per candidate."""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

from ltrr_os.policy import (
    BanditConfig,
    Decision,
    Exploration,
    FixedPlanPolicy,
    PerStrategyBandit,
    PlanBandit,
    PlanBanditConfig,
    Policy,
    RoundResult,
    RulePolicy,
    StrategyChoice,
    SyntheticEnvironment,
    VWBandit,
    simulate,
)

WINDOW = 1000


def _per_strategy(exploration: Exploration, seed: int) -> VWBandit:
    return PerStrategyBandit(BanditConfig(name="per-strategy", exploration=exploration, seed=seed))


def _plan(exploration: Exploration, seed: int) -> VWBandit:
    return PlanBandit(PlanBanditConfig(name="plan", exploration=exploration, seed=seed))


LEARNED: dict[str, Callable[[int], VWBandit]] = {
    "PerStrategyBandit epsilon": lambda seed: _per_strategy("epsilon", seed),
    "PerStrategyBandit squarecb": lambda seed: _per_strategy("squarecb", seed),
    "PlanBandit epsilon": lambda seed: _plan("epsilon", seed),
    "PlanBandit squarecb": lambda seed: _plan("squarecb", seed),
}
STATIC: dict[str, Callable[[int], Policy]] = {
    "FixedPlanPolicy all@100": lambda seed: FixedPlanPolicy({"*": 100}),
    "RulePolicy": lambda seed: RulePolicy(),
}


def _timing(name: str, make: Callable[[int], VWBandit], decisions: int) -> None:
    """Decide and learn times of a policy trained for 1,000 rounds (five strategies apply)."""
    policy = make(0)
    environment = SyntheticEnvironment(seed=99)
    simulate(policy, environment, 1000)
    searches = [environment.search() for _ in range(decisions)]
    decide_us: list[float] = []
    rounds = []
    for search in searches:
        started = time.perf_counter_ns()
        decision = policy.decide(search.context)
        decide_us.append((time.perf_counter_ns() - started) / 1000)
        rounds.append((search.context, decision, search.outcome(decision)))
    clock = time.perf_counter()
    for context, decision, outcome in rounds:
        policy.learn(context, decision, outcome)
    learn_rate = len(rounds) / (time.perf_counter() - clock)
    cuts = statistics.quantiles(decide_us, n=100)
    print(f"{name:28s} {cuts[49]:8.0f} {cuts[98]:8.0f} {learn_rate:10.0f}")


def _window(results: list[RoundResult]) -> tuple[float, float, float]:
    return (
        statistics.fmean(r.hit for r in results),
        statistics.fmean(r.candidates for r in results),
        statistics.fmean(r.reward() for r in results),
    )


def _learning(name: str, make: Callable[[int], Policy], rounds: int, seeds: int) -> None:
    first, last, explored = [], [], []
    for seed in range(1, seeds + 1):
        results = simulate(make(seed), SyntheticEnvironment(seed=seed), rounds)
        first.append(_window(results[:WINDOW]))
        last.append(_window(results[-WINDOW:]))
        explored.append(statistics.fmean(r.explored for r in results[-WINDOW:]))
    a, b = [tuple(statistics.fmean(v) for v in zip(*w, strict=True)) for w in (first, last)]
    print(
        f"{name:28s} {a[0]:6.3f} {a[1]:6.1f} {a[2]:7.3f}   {b[0]:6.3f} {b[1]:6.1f} {b[2]:7.3f}"
        f"   {statistics.fmean(explored):5.2f}"
    )


def _hindsight(rounds: int, seeds: int) -> None:
    """The best curated plan per logged query type, chosen knowing every outcome: what the plan
    bandit could earn if it never had to explore."""
    bandit = PlanBandit()
    results: dict[tuple[str, tuple[tuple[str, int], ...]], list[RoundResult]] = defaultdict(list)
    for seed in range(1, seeds + 1):
        environment = SyntheticEnvironment(seed=seed)
        for _ in range(rounds):
            search = environment.search()
            for plan in bandit.plans(search.context):
                choices = [
                    StrategyChoice(strategy=s, size=n, probability=1) for s, n in plan.items()
                ]
                found = search.outcome(Decision(policy="hindsight", choices=choices)).engaged
                weight = search.weight if found else 0.0
                key = (search.context.query.features.query_type, tuple(plan.items()))
                results[key].append(RoundResult(found, weight, sum(plan.values()), False))
    best: dict[str, list[RoundResult]] = {}
    for (query_type, _), outcomes in results.items():
        if query_type not in best or _window(outcomes)[2] > _window(best[query_type])[2]:
            best[query_type] = outcomes
    hit, candidates, reward = _window([r for outcomes in best.values() for r in outcomes])
    print(
        f"{'best plan per type, hindsight':28s} {'':24s}{hit:6.3f} {candidates:6.1f} {reward:7.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--decisions", type=int, default=2000, help="timed decisions")
    args = parser.parse_args()

    print(f"{'policy':28s} {'p50 µs':>8s} {'p99 µs':>8s} {'learn/s':>10s}")
    for name, learned in LEARNED.items():
        _timing(name, learned, args.decisions)

    print(f"\nfirst and last {WINDOW} of {args.rounds} rounds, mean of {args.seeds} seeds")
    print(
        f"{'policy':28s} {'hit':>6s} {'cands':>6s} {'reward':>7s}   "
        f"{'hit':>6s} {'cands':>6s} {'reward':>7s}   {'explored':>5s}"
    )
    policies: dict[str, Callable[[int], Policy]] = {**STATIC, **LEARNED}
    for name, make in policies.items():
        _learning(name, make, args.rounds, args.seeds)
    _hindsight(args.rounds, args.seeds)


if __name__ == "__main__":
    main()
