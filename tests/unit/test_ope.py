"""Off-policy estimators on logs whose truth is known."""

from __future__ import annotations

import random

import pytest

from ltrr_os.evaluation import LoggedRound, estimate
from ltrr_os.models import policy_gate
from ltrr_os.policy import Interval, SyntheticEnvironment, new_default_policy, simulate

P_REWARD = {(0, "a"): 0.8, (0, "b"): 0.2, (1, "a"): 0.3, (1, "b"): 0.6}


def _target(context: int) -> str:
    return "a" if context == 0 else "b"  # the best action: true value (0.8 + 0.6) / 2 = 0.7


def _logs(
    n: int, propensity_a: float, logged_a: float | None = None, seed: int = 1
) -> list[LoggedRound]:
    """Uniform contexts; the logger plays a with `propensity_a` and logs `logged_a` (the truth
    unless a wrong one is given)."""
    rng = random.Random(seed)
    claimed = propensity_a if logged_a is None else logged_a
    rounds = []
    for _ in range(n):
        context = rng.randrange(2)
        action = "a" if rng.random() < propensity_a else "b"
        reward = float(rng.random() < P_REWARD[(context, action)])
        logging = {"a": claimed, "b": 1 - claimed}
        rounds.append(
            LoggedRound(
                context=context,
                action=action,
                propensity=logging[action],
                reward=reward,
                target={_target(context): 1.0},
                logging=logging,
            )
        )
    return rounds


def _contains(interval: Interval, value: float) -> bool:
    assert interval.low is not None
    assert interval.high is not None
    return interval.low <= value <= interval.high


def _width(interval: Interval) -> float:
    assert interval.low is not None
    assert interval.high is not None
    return interval.high - interval.low


def test_ips_snips_and_dr_recover_a_known_policy_value() -> None:
    result = estimate(_logs(8000, 0.3))
    for name in ("ips", "snips", "dr"):
        interval = getattr(result, name)
        assert interval.value == pytest.approx(0.7, abs=0.03), name
        assert _contains(interval, 0.7), name
    assert _width(result.dr) <= _width(result.ips)
    assert 2000 < result.effective_sample_size < 8000
    assert not result.propensities_suspect


def test_a_wrong_propensity_is_caught() -> None:
    """The logger played a 30% of the time but logged 60%: the weights no longer average to
    one, and the estimate says so."""
    result = estimate(_logs(8000, 0.3, logged_a=0.6))
    assert result.propensities_suspect
    assert not _contains(result.mean_weight, 1.0)


def test_a_target_the_logs_never_chose_has_no_support_not_a_number() -> None:
    rounds = [
        LoggedRound(
            context=0, action="a", propensity=1.0, reward=1.0, target={"b": 1.0}, logging={"a": 1}
        )
        for _ in range(50)
    ]
    result = estimate(rounds)
    assert (result.ips.value, result.snips.value, result.dr.value) == (None, None, None)
    assert result.matches == 0


def test_the_reward_model_never_scores_the_rounds_it_was_fitted_on() -> None:
    """One round of a rare (context, action) with reward 1: fitted on itself, DR's model would
    predict exactly its reward; cross-fitted, the other fold's model knows nothing of it."""
    rounds = [
        LoggedRound(context=c, action="b", propensity=0.5, reward=0.0, target={"b": 1.0})
        for c in range(40)
    ] + [LoggedRound(context="rare", action="a", propensity=0.5, reward=1.0, target={"a": 1.0})]
    result = estimate(rounds, folds=2)
    assert result.dr.value is not None
    assert result.dr.value == pytest.approx(2 / 41, abs=1e-6)  # the weighted residual, in full


def _rounds(n: int, target: dict[str, float]) -> list[LoggedRound]:
    """Logged uniformly over a (reward 1) and b (reward 0)."""
    logging = {"a": 0.5, "b": 0.5}
    return [
        LoggedRound(
            context="c",
            action="a" if i % 2 else "b",
            propensity=0.5,
            reward=1.0 if i % 2 else 0.0,
            target=target,
            logging=logging,
        )
        for i in range(n)
    ]


def test_the_policy_gate_promotes_only_what_is_not_worse_than_the_live_policy() -> None:
    better = policy_gate(_rounds(200, {"a": 1.0}))
    assert better.promote, better.reason
    assert "is not below the live policy's" in better.reason
    assert policy_gate(_rounds(200, {"a": 0.5, "b": 0.5})).promote  # the live policy itself
    worse = policy_gate(_rounds(200, {"b": 1.0}))
    assert not worse.promote
    assert "is below the live policy's" in worse.reason
    assert worse.metrics["held_out_decisions"] == 200
    unsupported = policy_gate(_rounds(200, {"never logged": 1.0}))
    assert not unsupported.promote
    assert "no support" in unsupported.reason
    few = policy_gate(_rounds(20, {"a": 1.0}))
    assert not few.promote
    assert "too few" in few.reason


def test_a_plan_bandits_logged_round_is_the_logged_decision_judged_by_its_own_pmf() -> None:
    policy = new_default_policy()
    environment = SyntheticEnvironment(seed=5)
    simulate(policy, environment, 300)
    checked = 0
    for _ in range(50):
        search = environment.search()
        decision = policy.decide(search.context)
        logged = policy.logged_round(search.context, decision, search.outcome(decision))
        if logged is None:
            assert not decision.plan or not decision.distribution
            continue
        checked += 1
        found = policy.with_target(search.context, logged)
        assert (
            found.logging
            == logged.logging
            == {tuple(sorted(o.plan.items())): o.probability for o in decision.distribution}
        )
        assert found.propensity == found.logging[found.action] > 0
        assert sum(found.target.values()) == pytest.approx(1.0, abs=1e-6)
        assert found.reward <= 1.0
    assert checked > 30
