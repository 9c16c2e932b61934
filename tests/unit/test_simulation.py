"""The pieces of `ltrr simulate` that need no node: simulated users, the oracle, off-policy
estimates and the report."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rapidfuzz.distance import Levenshtein

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
from ltrr_os.evaluation._report import markdown_report, write_report
from ltrr_os.evaluation._simulate import PolicyRun, Round, _curve, _ndcg, _oracle_plan
from ltrr_os.evaluation._world import EXAMINATION, SimulatedSearch, World


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


@pytest.fixture(scope="module")
def world() -> World:
    judged = [("songs for a rainy day", frozenset({"track:1", "track:2"}))]
    return build_world(_entities(), judged, seed=11, users=20, pool=200)


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
    assert set(families) == {"known_item", "topical", "attribute", "ambiguous"}
    assert families["known_item"] > families["ambiguous"]
    assert sum(world.weights) == pytest.approx(1.0)
    texts = Counter(search.text for search in stream)
    assert texts.most_common(1)[0][1] > 20, "head intents repeat"
    assert any(search.text != search.intent.text for search in stream), "some have typos"
    shuffled = _entities()
    random.Random(1).shuffle(shuffled)
    same = build_world(
        shuffled,
        [("songs for a rainy day", frozenset({"track:1", "track:2"}))],
        seed=11,
        users=20,
        pool=200,
    )
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
    lists: dict[str, list[tuple[str, float, dict[str, Any]]]] = {
        "lexical": [*((f"x{n}", 1.0, {}) for n in range(30)), ("want", 1.0, {})],
        "memory": [("x", 1.0, {}), ("want", 1.0, {})],
        "vector": [],
    }
    assert _oracle_plan(lists, frozenset({"want"})) == {"memory": 10}
    assert _oracle_plan(lists, frozenset({"nothing"})) == {}


def test_ndcg_rewards_wanted_items_near_the_top() -> None:
    wanted = frozenset({"a", "b"})
    assert _ndcg(["a", "b", "c"], wanted) == pytest.approx(1.0)
    assert _ndcg(["c", "a"], wanted) < _ndcg(["a", "c"], wanted)
    assert _ndcg(["c"], wanted) == 0.0


def test_off_policy_estimates_recover_a_target_policys_value() -> None:
    rng = random.Random(5)
    rounds = []
    for _ in range(20_000):
        context = rng.choice(["head", "tail"])
        action = rng.choice(["cheap", "dear"])  # logged uniformly: propensity 0.5
        success = {"cheap": 0.3, "dear": 0.8}[action] + (0.1 if context == "head" else 0.0)
        rounds.append(
            LoggedRound(context, action, 0.5, float(rng.random() < success), target_action="dear")
        )
    result = estimate(rounds)
    assert result.matches == pytest.approx(10_000, rel=0.05)
    for value in (result.ips, result.snips, result.dr):
        assert value == pytest.approx(0.85, abs=0.02)
    assert estimate([]).rounds == 0


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


def test_the_report_has_a_row_per_policy_plots_and_the_off_policy_table(tmp_path: Path) -> None:
    summary = SimulationSummary(
        parameters={"searches": 2, "seed": 1, "cost_per_candidate": 0.002},
        versions={"ltrr-os": "0"},
        policies={
            name: PolicySummary(
                whole_run=_metrics(s),
                last_20_percent=_metrics(s),
                learning_curve=[
                    CurvePoint(
                        searches=n,
                        success_at_10=s * n / 2,
                        candidate_recall=1,
                        candidates_per_query=9,
                    )
                    for n in (1, 2)
                ],
            )
            for name, s in (("lexical", 0.4), ("ltrr", 0.7))
        },
        off_policy={
            "lexical": {
                "success_at_10": {"ips": 0.41, "snips": 0.4, "dr": 0.39, "matches": 1, "rounds": 2}
            }
        },
    )
    rounds = [Round(success=True, ndcg=1.0, recall=True, candidates=10)] * 2
    runs = {
        "lexical": PolicyRun("lexical", None, False, rounds=rounds),
        "ltrr": PolicyRun("ltrr", None, True, rounds=rounds),
    }
    write_report(summary, runs, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "| ltrr | 0.700 |" in report
    assert "| lexical | success_at_10 | 0.400 | 0.410 |" in report
    assert "| ltrr | 0.350 | 0.700 |" in report, "the learning table: first and last block"
    for file in ("summary.json", "success_at_10.png", "regret.png", "candidates_per_query.png"):
        assert (tmp_path / file).stat().st_size > 0
    assert SimulationSummary.model_validate_json((tmp_path / "summary.json").read_text()) == (
        summary
    )
    assert markdown_report(summary).count("\n| ") >= 4


def test_the_learning_curve_has_blocks_of_a_thousand_searches_or_fifths() -> None:
    rounds = [Round(success=n % 2 == 0, ndcg=0, recall=True, candidates=n) for n in range(5000)]
    curve = _curve(rounds)
    assert [p.searches for p in curve] == [1000, 2000, 3000, 4000, 5000]
    assert curve[0].success_at_10 == 0.5
    assert curve[-1].candidates_per_query == pytest.approx(4499.5, abs=0.1)
    assert [p.searches for p in _curve(rounds[:500])] == [100, 200, 300, 400, 500]
