from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from vowpalwabbit import Workspace

from ltrr_os.policy import (
    SIZE_LEVELS,
    BanditConfig,
    Decision,
    DecisionContext,
    FixedPlanPolicy,
    Outcome,
    PerStrategyBandit,
    PlanBandit,
    PlanBanditConfig,
    Policy,
    RulePolicy,
    SingleStrategyPolicy,
    StrategyOption,
    StrategyOutcome,
    SyntheticEnvironment,
    TimeContext,
    UserProfile,
    VWBandit,
    new_default_policy,
    policy_from_bytes,
    simulate,
)
from ltrr_os.policy._budget import cap_to_budget, scale_to_budget
from ltrr_os.policy._features import (
    context_features,
    plan_action,
    strategy_action,
    token,
)
from ltrr_os.policy._per_strategy import Lesson, lessons
from ltrr_os.understanding import QueryFeatures, Reading, SlotMatch, UnderstoodQuery

STRATEGIES = ("lexical", "structured", "vector", "memory", "exploration")


def _context(
    query_type: str = "known_item",
    applicable: tuple[str, ...] = STRATEGIES,
    budget: int = 400,
) -> DecisionContext:
    features = QueryFeatures(
        length_chars=17,
        length_tokens=2,
        script="latin",
        language="en",
        has_numerals=False,
        has_year=False,
        typo_likelihood=0.0,
        query_type=query_type,  # type: ignore[arg-type]
        query_type_scores={"known_item": 0.6, "topical": 0.2, "attribute": 0.2},
    )
    slot = SlotMatch(
        slot="artist", value="Queen", confidence=0.9, start=0, end=1, matched="queen", fuzzy=False
    )
    return DecisionContext(
        query=UnderstoodQuery(
            text="queen bohemian",
            normalized="queen bohemian",
            tokens=["queen", "bohemian"],
            features=features,
            readings=[Reading(slots=[slot], residual="bohemian", likelihood=0.8)],
            memory_keys=["queen bohemian"],
        ),
        user=UserProfile(user_id="u1", affinities={"genre=rock": 0.7}, engagements=12),
        time=TimeContext(day_of_week=5, weekend=True, hour_bucket="evening", holiday_season=False),
        options=[
            StrategyOption(strategy=s, source_type=s, applicable=s in applicable)
            for s in STRATEGIES
        ],
        budget=budget,
    )


def _sizes(decision: Decision) -> dict[str, int]:
    return {choice.strategy: choice.size for choice in decision.every_choice}


# -- static policies ---------------------------------------------------------------------------


def test_single_strategy_runs_only_that_strategy() -> None:
    decision = SingleStrategyPolicy("vector").decide(_context())
    assert _sizes(decision) == {
        "lexical": 0,
        "structured": 0,
        "vector": 100,
        "memory": 0,
        "exploration": 0,
    }
    assert all(choice.probability == 1.0 for choice in decision.every_choice)
    assert [c.strategy for c in decision.choices] == ["vector"]
    assert decision.policy == "single-vector"
    assert not decision.explored


def test_choices_are_what_runs_and_a_logged_size_zero_choice_is_skipped() -> None:
    """`choices` lists only strategies that run; a decision logged with size-0 choices (as
    before the split) loads with them in `skipped`, and the plan's probability is unchanged."""
    logged = {
        "policy": "per-strategy",
        "choices": [
            {"strategy": "lexical", "size": 30, "probability": 0.5},
            {"strategy": "vector", "size": 0, "probability": 0.25},
        ],
    }
    decision = Decision.model_validate(logged)
    assert [c.strategy for c in decision.choices] == ["lexical"]
    assert [(c.strategy, c.probability) for c in decision.skipped] == [("vector", 0.25)]
    assert decision.probability == pytest.approx(0.125)
    assert decision.plan == {"lexical": 30}
    assert Decision.model_validate_json(decision.model_dump_json()) == decision


def test_inapplicable_strategies_are_not_run() -> None:
    decision = SingleStrategyPolicy("vector").decide(_context(applicable=("lexical",)))
    assert decision.plan == {}
    assert decision.choices == []
    assert sorted(c.strategy for c in decision.skipped) == sorted(STRATEGIES)


def test_rule_policy_default_plans_per_query_type() -> None:
    rules = RulePolicy()
    assert rules.decide(_context("known_item")).plan == {
        "lexical": 30,
        "memory": 30,
        "structured": 10,
    }
    assert rules.decide(_context("topical")).plan == {"vector": 100, "lexical": 30, "memory": 10}
    assert rules.decide(_context("attribute")).plan == {
        "structured": 100,
        "vector": 30,
        "memory": 10,
    }


def test_rule_policy_rules_replace_defaults_of_the_types_they_name() -> None:
    rules = RulePolicy({"topical": {"vector": 50}})
    assert rules.decide(_context("topical")).plan == {"vector": 50}
    assert rules.decide(_context("attribute")).plan["structured"] == 100


def test_negative_sizes_are_rejected() -> None:
    with pytest.raises(ValidationError):
        FixedPlanPolicy({"lexical": -1})
    with pytest.raises(ValidationError):
        RulePolicy({"topical": {"vector": -5}})


def test_fixed_plan_over_budget_is_scaled_proportionally() -> None:
    decision = FixedPlanPolicy({"*": 100}).decide(_context(budget=400))
    assert _sizes(decision) == dict.fromkeys(STRATEGIES, 80)
    uneven = FixedPlanPolicy({"lexical": 100, "vector": 50, "memory": 10})
    assert uneven.decide(_context(budget=64)).plan == {"lexical": 40, "vector": 20, "memory": 4}
    assert FixedPlanPolicy({"*": 100}).decide(_context(budget=0)).plan == {}


@given(st.dictionaries(st.sampled_from(STRATEGIES), st.integers(0, 500)), st.integers(0, 1000))
def test_scale_to_budget_spends_exactly_the_budget_proportionally(
    sizes: dict[str, int], budget: int
) -> None:
    total = sum(sizes.values())
    scaled = scale_to_budget(sizes, budget)
    assert sum(scaled.values()) == min(total, budget)
    for name, size in sizes.items():
        exact = size * min(1.0, budget / total) if total else 0
        assert abs(scaled[name] - exact) < 1
    assert scaled == scale_to_budget(dict(sizes), budget)


@given(st.dictionaries(st.sampled_from(STRATEGIES), st.integers(0, 500)), st.integers(0, 1000))
def test_cap_to_budget_cuts_largest_first(sizes: dict[str, int], budget: int) -> None:
    capped = cap_to_budget(sizes, budget)
    assert sum(capped.values()) <= budget or capped == sizes
    if sum(sizes.values()) <= budget:
        assert capped == sizes
        return
    cap = max(capped.values(), default=0)
    for name, size in sizes.items():
        assert capped[name] == min(size, cap)
    # the cap is the largest that fits: one more would overspend
    assert sum(min(size, cap + 1) for size in sizes.values()) > budget


# -- features --------------------------------------------------------------------------------

HOSTILE = st.text(
    st.characters(codec="utf-8")
    | st.sampled_from([*list("|: \t\n\r\x0b\x0c\x85\u2028\xa0'`\\\""), "\x00"]),
    max_size=30,
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1)


Parse = Callable[[list[str]], list[dict[str, int]]]


@pytest.fixture(scope="module")
def parse() -> Parse:
    """How VW reads example lines: namespace -> number of features, per line."""
    vw = Workspace("--cb_explore_adf --quiet")

    def parse(lines: list[str]) -> list[dict[str, int]]:
        examples = vw.parse(lines)
        try:
            return [
                {
                    chr(example.namespace(i)): example.num_features_in(i)
                    for i in range(example.num_namespaces())
                    if example.namespace(i) != 128  # VW's constant feature
                }
                for example in examples
            ]
        finally:
            vw.finish_example(examples)

    return parse


@settings(max_examples=60, deadline=None)
@given(
    slot_name=HOSTILE,
    slot_value=HOSTILE,
    language=HOSTILE,
    script=HOSTILE,
    hour=HOSTILE,
    strategy=HOSTILE,
    source=HOSTILE,
    affinities=st.dictionaries(HOSTILE, FLOATS, max_size=8),
    scores=st.dictionaries(HOSTILE, FLOATS, max_size=4),
)
def test_hostile_strings_cannot_break_the_vw_format(
    parse: Parse,
    slot_name: str,
    slot_value: str,
    language: str,
    script: str,
    hour: str,
    strategy: str,
    source: str,
    affinities: dict[str, float],
    scores: dict[str, float],
) -> None:
    context = _context()
    features = context.query.features.model_copy(
        update={"language": language, "script": script, "query_type_scores": scores}
    )
    slots = [
        SlotMatch(
            slot=slot_name, value=slot_value, confidence=1, start=0, end=1, matched="q", fuzzy=False
        ),
        SlotMatch(
            slot="entity_type",
            value=slot_value,
            confidence=1,
            start=1,
            end=2,
            matched="q",
            fuzzy=False,
        ),
    ]
    context = context.model_copy(
        update={
            "query": context.query.model_copy(
                update={
                    "features": features,
                    "readings": [Reading(slots=slots, residual="", likelihood=0.5)],
                }
            ),
            "user": UserProfile(affinities=affinities, engagements=3),
            "time": context.time.model_copy(update={"hour_bucket": hour}),
        }
    )
    shared = "shared " + context_features(context)
    record = (token(strategy), token(source))
    actions = [
        strategy_action(strategy, source, 30, record),
        plan_action(((strategy, source, 30, record), ("x", source, 10, record))),
    ]
    for line in (shared, *actions):
        assert "\n" not in line
        assert "\r" not in line
    parsed = parse([shared, *actions])
    assert set(parsed[0]) == set("qrut")
    etypes = 2 if slot_name == "entity_type" else 1
    assert parsed[0]["r"] == len({slot_name, "entity_type"}) + etypes + 4  # slots, likely...
    valued = sum(1 for w in scores.values() if math.isfinite(w) and abs(w) >= 1e-4)
    assert parsed[0]["q"] == 5 + valued  # type, language, script, length, typo; the scores
    kept = sum(1 for w in affinities.values() if math.isfinite(w) and abs(w) >= 1e-4)
    assert parsed[0]["u"] == min(kept, 5) + 1  # + the engagement bucket
    assert parsed[0]["t"] == 3  # weekend, no holiday
    assert parsed[1] == {"a": 5, "h": 2}
    assert parsed[2] == {"a": 6 + 2, "h": 4}


@given(HOSTILE)
def test_tokens_are_single_vw_names(text: str) -> None:
    name = token(text)
    assert name
    assert not any(ch.isspace() or ch in "|:" for ch in name)


# -- learned policies: probabilities, budget, applicability -----------------------------------

LEARNED: dict[str, Callable[[int], VWBandit]] = {
    "per-strategy-epsilon": lambda seed: PerStrategyBandit(BanditConfig(name="p", seed=seed)),
    "per-strategy-squarecb": lambda seed: PerStrategyBandit(
        BanditConfig(name="p", exploration="squarecb", seed=seed)
    ),
    "plan-epsilon": lambda seed: PlanBandit(PlanBanditConfig(name="q", seed=seed)),
    "plan-squarecb": lambda seed: PlanBandit(
        PlanBanditConfig(name="q", exploration="squarecb", seed=seed)
    ),
}


def _trained(make: Callable[[int], VWBandit], rounds: int = 300, seed: int = 7) -> VWBandit:
    policy = make(seed)
    simulate(policy, SyntheticEnvironment(seed=seed), rounds)
    return policy


@pytest.mark.parametrize("kind", LEARNED)
def test_learned_decisions_respect_budget_and_applicability(kind: str) -> None:
    policy = _trained(LEARNED[kind])
    for budget in (0, 25, 60, 400):
        for _ in range(30):
            decision = policy.decide(_context("topical", ("lexical", "vector"), budget))
            assert decision.candidate_cost <= budget
            assert set(decision.plan) <= {"lexical", "vector"}
            assert sorted(c.strategy for c in decision.every_choice) == sorted(STRATEGIES)
            assert all(c.size > 0 for c in decision.choices)
            for choice in decision.every_choice:
                assert 0 < choice.probability <= 1
                if choice.strategy not in ("lexical", "vector"):
                    assert (choice.size, choice.probability) == (0, 1.0)


@pytest.mark.parametrize("kind", LEARNED)
def test_nothing_applicable_decides_nothing_and_learns_nothing(kind: str) -> None:
    policy = LEARNED[kind](0)
    context = _context(applicable=())
    decision = policy.decide(context)
    assert decision.plan == {}
    assert decision.probability == 1.0
    policy.learn(context, decision, Outcome(strategies={}, engaged=False))
    assert policy.updates == 0


@pytest.mark.parametrize("kind", LEARNED)
def test_logged_probabilities_are_the_sampling_frequencies(kind: str) -> None:
    """With the model frozen, each plan (and each strategy's size) is drawn as often as the
    probability logged with it says; the joint is the product of the choices."""
    policy = _trained(LEARNED[kind])
    context = _context("attribute", budget=500)  # never cut: sizes are the sizes drawn
    draws = 2000
    decisions = [policy.decide(context) for _ in range(draws)]
    plans = Counter(tuple(sorted(d.plan.items())) for d in decisions)
    logged = {tuple(sorted(d.plan.items())): d.probability for d in decisions}
    assert sum(logged.values()) <= 1 + 1e-6
    for plan, count in plans.items():
        assert abs(count / draws - logged[plan]) < 0.04, plan
    for decision in decisions:
        assert decision.probability == pytest.approx(
            math.prod(c.probability for c in decision.every_choice)
        )
    if isinstance(policy, PerStrategyBandit):
        for strategy in STRATEGIES:
            sizes = Counter(_sizes(d)[strategy] for d in decisions)
            chance = {
                _sizes(d)[strategy]: c.probability
                for d in decisions
                for c in d.every_choice
                if c.strategy == strategy
            }
            for size, count in sizes.items():
                assert abs(count / draws - chance[size]) < 0.04
    most_likely = max(logged.values())
    assert all(not d.explored for d in decisions if d.probability == most_likely)
    assert any(d.explored for d in decisions)


# -- lessons from the sizes not drawn ---------------------------------------------------------

PMF = [0.1, 0.2, 0.3, 0.4]  # over SIZE_LEVELS = (0, 10, 30, 100)


def test_a_miss_teaches_every_level_up_to_the_size_drawn() -> None:
    assert SIZE_LEVELS == (0, 10, 30, 100)
    taught = lessons(30, None, 0.3, PMF, 30)
    assert [(x.level, x.size) for x in taught] == [(0, 0), (10, 10), (30, 30)]
    assert [x.probability for x in taught] == pytest.approx([1.0, 0.9, 0.7])


def test_a_hit_teaches_every_level_with_the_chance_of_reaching_its_rank() -> None:
    taught = lessons(30, 12, 0.3, PMF, 30)
    assert [(x.level, x.size) for x in taught] == [(0, 0), (10, 10), (30, 30), (100, 100)]
    # level 10 was revealed if the size drawn reached 10; 30 and 100 once it reached rank 12
    assert [x.probability for x in taught] == pytest.approx([1.0, 0.9, 0.7, 0.7])


def test_a_size_cut_by_the_budget_teaches_nothing_above_what_ran() -> None:
    taught = lessons(40, 5, 0.4, PMF, 100)
    assert [(x.level, x.size) for x in taught] == [(0, 0), (10, 10), (30, 30), (100, 40)]
    assert taught[-1].probability == pytest.approx(0.4)


def test_unknown_decisions_teach_only_what_they_reveal_whatever_the_outcome() -> None:
    assert lessons(50, 3, 1.0) == [Lesson(0, 0, 1.0), Lesson(10, 10, 1.0), Lesson(30, 30, 1.0)]
    assert lessons(30, 3, 0.25) == [Lesson(30, 30, 0.25)]
    assert lessons(40, None, 0.25) == []


# -- learning ---------------------------------------------------------------------------------


def test_plan_bandit_learns_to_find_more_with_fewer_candidates() -> None:
    policy = new_default_policy()
    assert isinstance(policy, PlanBandit)
    assert policy.config.exploration == "squarecb"
    results = simulate(policy, SyntheticEnvironment(seed=1), 5000)
    first, last = results[:1000], results[-1000:]
    hits = [sum(r.hit for r in part) / 1000 for part in (first, last)]
    candidates = [sum(r.candidates for r in part) / 1000 for part in (first, last)]
    assert hits[1] >= hits[0] + 0.05
    assert candidates[1] < candidates[0]
    rules = simulate(RulePolicy(), SyntheticEnvironment(seed=1), 5000)[-1000:]
    assert sum(r.reward() for r in last) > sum(r.reward() for r in rules)
    assert candidates[1] < 0.75 * sum(r.candidates for r in rules) / 1000


def test_per_strategy_bandit_learns_which_strategy_answers_which_query_type() -> None:
    policy = PerStrategyBandit(BanditConfig(name="p", exploration="squarecb", seed=3))
    environment = SyntheticEnvironment(seed=3)
    first = simulate(policy, environment, 3000)
    sizes: dict[tuple[str, str], Counter[int]] = {}
    for _ in range(600):
        search = environment.search()
        decision = policy.decide(search.context)
        kind = search.context.query.features.query_type
        for choice in decision.every_choice:
            sizes.setdefault((kind, choice.strategy), Counter())[choice.size] += 1
    usual = {key: counts.most_common(1)[0][0] for key, counts in sizes.items()}
    assert usual["topical", "vector"] == 100
    assert usual["attribute", "structured"] in (30, 100)
    assert usual["known_item", "lexical"] in (10, 30)
    assert all(usual[kind, "exploration"] == 0 for kind in ("known_item", "topical", "attribute"))
    hits = [sum(r.hit for r in part) / 1000 for part in (first[:1000], first[-1000:])]
    assert hits[1] >= hits[0] + 0.02


def _copy(policy: VWBandit) -> VWBandit:
    """The policy as another process gets it: through its published blob."""
    return policy_from_bytes(policy.to_bytes())


@pytest.mark.parametrize("kind", LEARNED)
def test_failed_strategies_teach_nothing(kind: str) -> None:
    """Three identical copies: one learns from failed strategies, one from the same searches
    succeeding, one not at all. Only the second may decide differently afterwards."""
    policy = _trained(LEARNED[kind])
    control, failing, learning = (_copy(policy) for _ in range(3))
    context = _context("topical")
    for copy, failed in ((control, None), (failing, True), (learning, False)):
        for _ in range(20):
            decision = copy.decide(context)
            if failed is None:
                continue
            outcome = Outcome(
                strategies={
                    s: StrategyOutcome(
                        strategy=s,
                        size=n,
                        hit_rank=1,
                        engagement_weight=1.0,
                        candidates=n,
                        failed=failed,
                    )
                    for s, n in decision.plan.items()
                },
                engaged=not failed,
            )
            copy.learn(context, decision, outcome)
    probes = [_context(kind) for kind in ("known_item", "topical", "attribute")] * 5
    control_choices = [control.decide(c).every_choice for c in probes]
    assert [failing.decide(c).every_choice for c in probes] == control_choices
    assert (failing.updates, failing.history) == (control.updates, control.history)
    assert [learning.decide(c).every_choice for c in probes] != control_choices
    assert learning.updates > control.updates


@pytest.mark.parametrize("kind", LEARNED)
def test_a_learner_elsewhere_learns_from_the_log_what_the_decider_would(kind: str) -> None:
    """A server decides and logs; a learner in another process (a copy from the published
    blob) learns from the logged JSON alone, later, after its own history moved on: its model
    ends up exactly where learning in place would have put it."""
    environment = SyntheticEnvironment(seed=11, failure_rate=0.0)
    server = _trained(LEARNED[kind], rounds=100)
    learner, in_place = _copy(server), _copy(server)
    logged = []
    for _ in range(60):
        search = environment.search()
        decision = server.decide(search.context)
        in_place.learn(search.context, decision, search.outcome(decision))
        logged.append(
            (
                search.context.model_dump_json(),
                decision.model_dump_json(),
                search.outcome(decision),
            )
        )
    for context_json, decision_json, outcome in logged:
        context = DecisionContext.model_validate_json(context_json)
        learner.learn(context, Decision.model_validate_json(decision_json), outcome)
    probes = [_context(k, budget=b) for k in ("known_item", "attribute") for b in (400, 60)]
    for probe in probes:
        assert learner.decide(probe).distribution == in_place.decide(probe).distribution
    assert learner.history == in_place.history


@pytest.mark.parametrize("kind", LEARNED)
def test_a_decision_logs_the_probability_of_every_plan(kind: str) -> None:
    """The logged distribution gives every plan's probability (off-policy estimates need the
    probability of plans not drawn), and the drawn plan's agrees with the decision's."""
    policy = _trained(LEARNED[kind])
    for budget in (400, 60):
        context = _context("attribute", budget=budget)
        decision = policy.decide(context)
        drawn = decision.probability_of(decision.plan, budget)
        assert drawn is not None
        if decision.distribution:
            assert sum(o.probability for o in decision.distribution) == pytest.approx(1, abs=1e-5)
            assert drawn == pytest.approx(decision.probability, abs=1e-6)
        else:  # per strategy: the PMFs, through the budget cut
            assert drawn >= decision.probability - 1e-9
        assert decision.probability_of({"no-such-strategy": 10}, budget) == 0.0
    static = RulePolicy().decide(_context("attribute"))
    assert static.probability_of(static.plan, 400) == 1.0
    assert static.probability_of({"lexical": 100}, 400) == 0.0


# -- persistence ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LEARNED)
def test_a_published_policy_decides_and_learns_as_the_original(kind: str) -> None:
    policy = _trained(LEARNED[kind])
    policy.version = 7
    loaded = _copy(policy)
    assert type(loaded) is type(policy)
    assert (loaded.version, loaded.config, loaded.updates) == (7, policy.config, policy.updates)
    contexts = [_context(k, budget=b) for k in ("known_item", "topical") for b in (400, 50)] * 10
    assert [policy.decide(c) for c in contexts] == [loaded.decide(c) for c in contexts]
    environment = SyntheticEnvironment(seed=3, failure_rate=0.0)
    for _ in range(50):
        search = environment.search()
        for copy in (policy, loaded):
            decision = copy.decide(search.context)
            copy.learn(search.context, decision, search.outcome(decision))
    assert [policy.decide(c) for c in contexts] == [loaded.decide(c) for c in contexts]


def _truncated(blob: bytes) -> bytes:
    return blob[: len(blob) - 100]


def _garbage_model(blob: bytes) -> bytes:
    return blob.partition(b"\n")[0] + b"\n" + b"\x00garbage" * 100


def _garbage_model_with_its_checksum(blob: bytes) -> bytes:
    """VW itself refuses the model (the checksum matches, so only VW can tell)."""
    import hashlib

    header, _, _ = blob.partition(b"\n")
    garbage = b"\x07garbage" * 100
    state = json.loads(header)
    state["model_sha256"] = hashlib.sha256(garbage).hexdigest()
    return json.dumps(state).encode() + b"\n" + garbage


def _no_state_line(blob: bytes) -> bytes:
    return blob.replace(b"\n", b" ")


def _bad_json(blob: bytes) -> bytes:
    return b'{"format": 2, "kind": \n' + blob.partition(b"\n")[2]


def _edited_state(**changes: Any) -> Callable[[bytes], bytes]:
    def edit(blob: bytes) -> bytes:
        header, _, model = blob.partition(b"\n")
        state = {**json.loads(header), **changes}
        return json.dumps(state).encode() + b"\n" + model

    return edit


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncated, "checksum"),
        (_garbage_model, "checksum"),
        (_garbage_model_with_its_checksum, "Vowpal Wabbit"),
        (_no_state_line, "no state line"),
        (_bad_json, "problems in its state"),
        (_edited_state(rng_state=["not", "a", "state"]), "state is invalid"),
        (_edited_state(kind="quantum"), "unknown policy kind"),
        (_edited_state(config={"name": "x y/z"}), "config is invalid"),
    ],
)
def test_a_damaged_policy_blob_is_refused_with_a_reason(
    damage: Callable[[bytes], bytes], reason: str
) -> None:
    blob = _trained(LEARNED["plan-squarecb"], rounds=50).to_bytes()
    assert policy_from_bytes(blob).updates > 0
    with pytest.raises(ValueError, match=reason):
        policy_from_bytes(damage(blob))


# -- threads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["per-strategy-squarecb", "plan-squarecb"])
def test_concurrent_decide_learn_and_publish(kind: str) -> None:
    policy = LEARNED[kind](5)
    environment = SyntheticEnvironment(seed=5, failure_rate=0.0)  # every search teaches
    searches = [environment.search() for _ in range(4 * 150)]
    errors: list[BaseException] = []
    blobs: list[bytes] = []

    def work(worker: int) -> None:
        try:
            for done, search in enumerate(searches[worker::4], start=1):
                decision = policy.decide(search.context)
                policy.learn(search.context, decision, search.outcome(decision))
                if worker == 0 and done % 50 == 0:
                    blobs.append(policy.to_bytes())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert policy.updates == len(searches)
    assert len(blobs) == 3
    assert all(policy_from_bytes(b).decide(_context()).candidate_cost <= 400 for b in blobs)


# -- the contract every policy keeps ----------------------------------------------------------


def _make(name: str) -> Policy:
    if name in LEARNED:
        return LEARNED[name](0)
    if name == "rule":
        return RulePolicy()
    if name == "fixed":
        return FixedPlanPolicy({"*": 100})
    return SingleStrategyPolicy(name.removeprefix("single-"))


EVERY_POLICY = [*LEARNED, "rule", "fixed", *(f"single-{s}" for s in STRATEGIES)]


@pytest.mark.parametrize("name", EVERY_POLICY)
def test_every_policy_keeps_the_contract(name: str) -> None:
    """Whatever the policy: plans within the budget and the applicable strategies, one choice
    per option, the drawn plan's probability in the logged distribution, a decision that
    survives the log (JSON) and teaches without error, including a search that found nothing."""
    policy = _make(name)
    environment = SyntheticEnvironment(seed=2, failure_rate=0.05)
    for budget in (0, 60, 400):
        for _ in range(20):
            search = environment.search()
            context = search.context.model_copy(update={"budget": budget})
            decision = policy.decide(context)
            assert decision.candidate_cost <= budget
            decided = sorted(c.strategy for c in decision.every_choice)
            assert decided == sorted(o.strategy for o in context.options)
            assert all(c.size > 0 for c in decision.choices)
            applicable = {o.strategy for o in context.options if o.applicable}
            assert set(decision.plan) <= applicable
            drawn = decision.probability_of(decision.plan, budget)
            assert drawn is not None
            assert drawn > 0
            logged = Decision.model_validate_json(decision.model_dump_json())
            assert logged == decision
            policy.learn(context, logged, search.outcome(logged))
            policy.learn(context, logged, Outcome(strategies={}, engaged=False))
