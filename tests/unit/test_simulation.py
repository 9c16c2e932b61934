"""The pieces of `ltrr simulate` that need no node: simulated users, the oracle, off-policy
estimates and the report."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from rapidfuzz.distance import Levenshtein

from ltrr_os.config import LtrrSettings
from ltrr_os.evaluation import (
    CurvePoint,
    LoggedRound,
    PolicyMetrics,
    PolicySummary,
    SimulationSummary,
    build_world,
    estimate,
    misspell,
)
from ltrr_os.evaluation._report import _rolling, write_report
from ltrr_os.evaluation._simulate import (
    PolicyRun,
    RankerTraining,
    Round,
    _curve,
    _ndcg,
    make_policy,
    oracle_plan,
)
from ltrr_os.evaluation._world import EXAMINATION, SimulatedSearch, World
from ltrr_os.policy import RulePolicy, VWBandit, new_default_policy
from ltrr_os.ranking import FusedRanker


def _entities() -> list[dict[str, object]]:
    genres = ["rock", "pop", "jazz"]
    tracks = [
        {
            "id": f"track:{n}",
            "entity_type": "track",
            "title": f"Song Number {n} Forever",
            "artist": f"Artist {n % 7}",
            "album": f"Album {n % 11}",
            "popularity": (n % 13) / 13,
            "genre": [genres[n % 3]],
            "era": ["1980s" if n % 2 else "1990s"],
            "mood": ["happy"] if n % 5 == 0 else [],
        }
        for n in range(300)
    ]
    return [*tracks, {"id": "artist:0", "entity_type": "artist", "title": "Artist 0"}]


JUDGED = [("songs for a rainy day", frozenset(f"track:{n}" for n in range(0, 300, 2)))]
"""Curated tracks: the attribute intents want those of their attributes."""


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(_entities(), JUDGED, seed=11, users=20, pool=200)


def test_a_typo_is_one_small_edit_of_one_long_word() -> None:
    rng = random.Random(3)
    for _ in range(200):
        text = "taylor swift shake it off"
        typo = misspell(text, rng)
        changed = [(a, b) for a, b in zip(text.split(), typo.split(), strict=True) if a != b]
        assert len(changed) <= 1
        assert all(len(a) >= 4 and Levenshtein.distance(a, b) <= 2 for a, b in changed)
    assert misspell("a b c", rng) == "a b c"


def test_the_stream_mixes_every_family_and_repeats_for_the_same_seed(world: World) -> None:
    stream = world.searches(2000)
    assert stream == world.searches(2000)
    families = Counter(search.intent.family for search in stream)
    # No vectors, no vague intents (they range over the users' tastes).
    assert set(families) == {"known_item", "topical", "attribute", "ambiguous", "related"}
    assert families["known_item"] > families["ambiguous"]
    assert sum(world.weights) == pytest.approx(1.0)
    texts = Counter(search.text for search in stream)
    assert texts.most_common(1)[0][1] > 20, "head intents repeat"
    assert any(search.text != search.intent.text for search in stream), "some have typos"
    shuffled = _entities()
    random.Random(1).shuffle(shuffled)
    same = build_world(shuffled, JUDGED, seed=11, users=20, pool=200)
    assert same.searches(2000) == stream, "the order of the entities does not matter"
    other = build_world(_entities(), [], seed=12, users=20, pool=200).searches(2000)
    assert [s.text for s in other] != [s.text for s in stream]


def test_known_item_intents_want_exactly_their_entity(world: World) -> None:
    for intent in world.intents:
        if intent.family == "known_item":
            assert len(intent.wanted) == 1
            entity = next(iter(intent.wanted))
            assert entity.startswith(("track:", "artist:"))


def test_users_examine_less_further_down_and_only_engage_with_what_they_see(
    world: World,
) -> None:
    search = next(s for s in world.searches(500) if s.intent.family == "attribute")
    shown = [f"noise:{n}" for n in range(10)]
    examined: Counter[int] = Counter()
    for n in range(3000):
        for event in world.engage(search, shown, random.Random(n)):
            assert event.object_id in shown
            examined[event.position] += event.action == "impression"
    rates = [examined[p] / 3000 for p in range(1, 11)]
    assert rates == pytest.approx(list(EXAMINATION), abs=0.04)


def test_the_same_random_numbers_give_the_same_behaviour(world: World) -> None:
    search = world.searches(50)[7]
    wanted = sorted(search.intent.wanted)
    shown = [*wanted[:3], "noise:1", "noise:2"]
    first = world.engage(search, shown, random.Random("7/7"))
    assert first == world.engage(search, shown, random.Random("7/7"))
    wanted_first = world.engage(search, wanted[:1], random.Random(0))
    assert wanted_first[0].action == "impression"


def test_a_wanted_result_is_engaged_with_far_more_than_noise(world: World) -> None:
    search: SimulatedSearch = next(
        s for s in world.searches(500) if s.intent.family == "known_item"
    )
    item = next(iter(search.intent.wanted))
    clicks = Counter[str]()
    for n in range(1000):
        for event in world.engage(search, [item, "noise:1"], random.Random(n)):
            clicks[event.object_id] += event.action == "click"
    assert clicks[item] > 900
    assert clicks["noise:1"] < 50


def test_the_oracle_takes_the_cheapest_strategy_that_has_a_wanted_item() -> None:
    lists = {
        "lexical": [*(f"x{n}" for n in range(30)), "want"],
        "memory": ["x", "want"],
        "vector": [],
    }
    assert oracle_plan(lists, frozenset({"want"})) == {"memory": 10}
    assert oracle_plan(lists, frozenset({"nothing"})) == {}


def test_attribute_intents_want_curated_tracks_of_their_attributes(world: World) -> None:
    """Judged by what editors chose, which no template reads, not by the attributes alone."""
    curated = JUDGED[0][1]
    attribute = [i for i in world.intents if i.family == "attribute"]
    assert attribute
    assert all(intent.wanted <= curated for intent in attribute)


def test_a_users_taste_is_not_a_catalog_attribute(world: World) -> None:
    """Whom a user likes does not follow genre: each genre holds liked and unliked items."""
    user = world.users[0]
    for genre in range(3):
        items = [f"track:{n}" for n in range(genre, 300, 3)]
        liked = sum(user.likes(item) for item in items)
        assert 0.1 * len(items) < liked < 0.6 * len(items)


def test_ndcg_rewards_wanted_items_near_the_top() -> None:
    wanted = frozenset({"a", "b"})
    assert _ndcg(["a", "b", "c"], wanted) == pytest.approx(1.0)
    assert _ndcg(["c", "a"], wanted) < _ndcg(["a", "c"], wanted)
    assert _ndcg(["c"], wanted) == 0.0


def _metrics(success: float) -> PolicyMetrics:
    return PolicyMetrics(
        success_at_10=success,
        ndcg_at_10=0.5,
        candidate_recall=0.9,
        candidates_per_query=40,
        latency_ms_p50=12.0,
        latency_ms_p95=30.0,
        opensearch_ms_p50=8.0,
        cumulative_regret=3.0,
    )


def test_the_report_leads_with_the_verdict_and_has_both_tables_plots_and_intervals(
    tmp_path: Path,
) -> None:
    def summary_of(success: float) -> PolicySummary:
        return PolicySummary(
            whole_run=_metrics(success),
            last_20_percent=_metrics(success),
            retrieval_alone=_metrics(success - 0.1),
            retrieval_alone_last_20_percent=_metrics(success - 0.1),
            learning_curve=[
                CurvePoint(
                    searches=n,
                    success_at_10=success * n / 2,
                    candidate_recall=1,
                    candidates_per_query=9,
                )
                for n in (1, 2)
            ],
        )

    rounds = [Round(success=True, ndcg=1.0, recall=True, candidates=10)] * 2
    rounds_of = {"lexical": 0.4, "all": 0.5, "ltrr": 0.7}
    rounds_estimate = estimate(
        [
            LoggedRound(context=0, action="a", propensity=0.5, reward=1.0, target={"a": 1.0})
            for _ in range(5)
        ]
    )
    unsupported = estimate(
        [LoggedRound(context=0, action="a", propensity=0.5, reward=1.0, target={"b": 1.0})]
    )
    summary = SimulationSummary(
        parameters={
            "searches": 2,
            "seed": 1,
            "cost_per_candidate": 0.002,
            "candidate_budget": 400,
            "shown": 10,
            "ranker_every": 2000,
            "memory_every": 200,
        },
        versions={"ltrr-os": "0"},
        policies={name: summary_of(s) for name, s in rounds_of.items()},
        off_policy={"lexical": {"success_at_10": rounds_estimate, "candidate_recall": unsupported}},
    )
    runs = {
        name: PolicyRun(
            name, RulePolicy(), name == "ltrr", "", FusedRanker(), RankerTraining(1), rounds=rounds
        )
        for name in rounds_of
    }
    write_report(summary, runs, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert report.splitlines()[2].startswith("**Over the last 20% of searches, LTR&R found")
    assert "1.75x the best single strategy (lexical)" in report
    assert "## The whole system" in report
    assert "## Retrieval alone" in report
    assert "| ltrr | 0.700 |" in report
    assert "| ltrr | 0.600 |" in report, "the retrieval-alone row"
    assert "| lexical | candidate_recall | 0.900 | no support |" in report
    assert "| lexical | success_at_10 | 0.400 | 2.000 [2.000, 2.000] |" in report
    assert "candidate budget 400" in report
    for file in ("summary.json", "frontier.png", "success_at_10.png", "regret.png"):
        assert (tmp_path / file).stat().st_size > 0
    assert SimulationSummary.model_validate_json((tmp_path / "summary.json").read_text()) == (
        summary
    )


def test_the_learning_curve_has_blocks_of_a_thousand_searches_or_fifths() -> None:
    rounds = [Round(success=n % 2 == 0, ndcg=0, recall=True, candidates=n) for n in range(5000)]
    curve = _curve(rounds)
    assert [p.searches for p in curve] == [1000, 2000, 3000, 4000, 5000]
    assert curve[0].success_at_10 == 0.5
    assert curve[-1].candidates_per_query == pytest.approx(4499.5, abs=0.1)
    assert [p.searches for p in _curve(rounds[:500])] == [100, 200, 300, 400, 500]


def test_logged_decisions_are_written_as_dsjson_that_vw_reads(tmp_path: Path) -> None:
    from vowpalwabbit import Workspace

    from ltrr_os.evaluation import write_dsjson
    from ltrr_os.evaluation._simulate import Logged
    from ltrr_os.policy import SyntheticEnvironment, new_default_policy

    policy = new_default_policy()
    environment = SyntheticEnvironment(seed=4)
    logged = []
    for _ in range(50):
        search = environment.search()
        decision = policy.decide(search.context)
        logged.append(Logged(search.context, decision, 1.0, float(bool(decision.plan))))
    path = tmp_path / "decisions.dsjson"
    assert write_dsjson(logged, path, cost_per_candidate=0.001) == 50
    first = json.loads(path.read_text().splitlines()[0])
    assert first["_label_cost"] == pytest.approx(
        0.001 * sum(logged[0].decision.plan.values()) - logged[0].recall
    )
    vw = Workspace("--cb_explore_adf --dsjson --explore_eval --quiet")
    for line in path.read_text().splitlines():
        example = vw.parse(line)
        vw.learn(example)
        vw.finish_example(example)
    assert vw.get_weighted_examples() == 50


def test_learning_curves_plot_full_windows_only() -> None:
    """The first searches' mean (one lucky search: 1.0) is not part of a learning curve."""
    assert _rolling([1.0, 0.0, 0.0, 1.0], 2) == [0.5, 0.0, 0.5]
    assert _rolling([1.0], 2) == []


@pytest.mark.parametrize("name", ["ltrr", "ltrr-per-strategy"])
def test_the_learned_policies_pay_the_configured_cost_per_candidate(name: str) -> None:
    policy, learns = make_policy(name, seed=1, cost_per_candidate=0.0005)
    assert learns
    assert isinstance(policy, VWBandit)
    assert policy.config.cost_per_candidate == 0.0005
    default = new_default_policy(LtrrSettings(cost_per_candidate=0.0007).cost_per_candidate)
    assert default.config.cost_per_candidate == 0.0007
