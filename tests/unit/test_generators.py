"""The generators beyond the query's text, without a node: what related, personal and fresh ask
OpenSearch for, the taste profiles keep, and the simulated users who need them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ltrr_os.config import LtrrSettings, load_schema
from ltrr_os.embedding import Encoder
from ltrr_os.evaluation import build_world
from ltrr_os.evaluation._simulate import WithoutStrategies, make_policy
from ltrr_os.feedback import Profile
from ltrr_os.learning import LearningRules, LoggedEvent, LoggedSearch
from ltrr_os.policy import DecisionContext, StrategyOption, TimeContext, UserProfile
from ltrr_os.strategies import Seed, StrategyContext, get_strategy, strategies
from ltrr_os.strategies._builtin import FRESH_DAYS, related_clauses
from ltrr_os.understanding import Lexicon, understand

MUSIC = load_schema("music")
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


class FixedEncoder(Encoder):
    """Every text the same 3-d vector: enough to see what personal blends."""

    model_id = "fixed"
    dimension = 3

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.tile(np.asarray([0.0, 0.0, 1.0], dtype=np.float32), (len(texts), 1))


def context(**changes: Any) -> StrategyContext:
    base = StrategyContext(settings=LtrrSettings(), schema=MUSIC, encoder=FixedEncoder(), now=NOW)
    return StrategyContext(**{**base.__dict__, **changes})


def query(text: str) -> Any:
    return understand(text, Lexicon(slot_values={}, entity_types=[], vocabulary={}))


def test_related_asks_for_the_entities_that_share_the_hits_values() -> None:
    track = Seed("track:1", {"entity_type": "track", "artist": "Queen", "album": "Jazz"}, 0.8)
    clauses = related_clauses(MUSIC, track)
    assert len(clauses) == 2  # its artist, its album
    assert all(c["constant_score"]["_name"] == "track:1" for c in clauses)
    assert all(c["constant_score"]["boost"] == 0.8 for c in clauses)
    filters = [c["constant_score"]["filter"]["bool"]["filter"] for c in clauses]
    assert {"terms": {"title.keyword": ["Queen"]}} in filters[0]
    assert {"terms": {"entity_type": ["album"]}} in filters[1]
    # No album: the album relation does not apply (a missing value matches nothing).
    single = Seed("track:2", {"entity_type": "track", "artist": "Queen"}, 1.0)
    assert len(related_clauses(MUSIC, single)) == 1
    artist = Seed("artist:queen", {"entity_type": "artist", "title": "Queen"}, 1.0)
    [works] = related_clauses(MUSIC, artist)
    assert {"terms": {"artist.keyword": ["Queen"]}} in works["constant_score"]["filter"]["bool"][
        "filter"
    ]
    related = get_strategy("related")
    assert related.params(query("queen"), context(), 10) is None  # no hits to start from
    params = related.params(query("queen"), context(seeds=(track, artist)), 10)
    assert params is not None
    assert params["seed_ids"] == ["track:1", "artist:queen"]
    assert len(params["related_clauses"]) == 3


def test_personal_runs_only_with_a_taste_and_blends_it_with_the_query() -> None:
    personal, led = get_strategy("personal"), get_strategy("personal_taste")
    assert not personal.applicable(query("rock"), context())
    assert personal.params(query("rock"), context(), 10) is None
    taste = context(user_vector=(1.0, 0.0, 0.0))
    assert personal.applicable(query("rock"), taste)
    blended = personal.params(query("rock"), taste, 10)
    mostly = led.params(query("rock"), taste, 10)
    assert blended is not None
    assert mostly is not None
    assert blended["vector"] == pytest.approx([2**-0.5, 0.0, 2**-0.5], abs=1e-5)
    assert mostly["vector"][0] > blended["vector"][0] > 0
    assert np.linalg.norm(mostly["vector"]) == pytest.approx(1.0, abs=1e-5)


def test_fresh_asks_for_the_last_days_to_the_hour() -> None:
    params = get_strategy("fresh").params(query("rock"), context(), 10)
    assert params is not None
    hour = NOW.replace(minute=0)
    assert params["since"] == (hour - timedelta(days=FRESH_DAYS)).isoformat()
    assert params["origin"] == hour.isoformat()
    assert get_strategy("fresh").params(query("  "), context(), 10) is None


def test_the_taste_follows_engagement_and_leans_to_the_recent() -> None:
    profile = Profile(user_id="u")
    assert profile.view(NOW).taste is None  # no history, no taste
    profile.engage({"genre": ["rock"]}, [1.0, 0.0], 1.0, NOW - timedelta(days=60))
    profile.engage({}, [0.0, 1.0], 1.0, NOW - timedelta(days=30))
    assert profile.taste is not None
    # Two months against one: the newer counts twice as much (a month's half-life).
    assert profile.taste.mean == pytest.approx([1 / 3, 2 / 3], abs=1e-4)
    months_later = profile.view(NOW).taste
    assert months_later is not None
    assert months_later[1] > months_later[0]
    profile.engage({}, [1.0, 0.0], 0.5, NOW - timedelta(minutes=5))
    session = profile.view(NOW).taste
    assert session is not None
    assert session[0] > session[1]  # the session's engagement leads while it is recent
    assert profile.view(NOW + timedelta(days=1)).taste != session
    stored = Profile.model_validate(profile.model_dump(mode="json"))
    assert stored.view(NOW).taste == session


def test_the_learning_rules_move_the_taste_towards_what_was_engaged_with() -> None:
    rules = LearningRules(reward_window_s=0)
    search = LoggedSearch(
        "s1", "rock", NOW, "u", None, frozenset({"e1"}), frozenset({"e1"}), {"e1": {}}
    )
    event = LoggedEvent("k1", "s1", "playback", "e1", NOW, NOW, user_id="u")
    impression = LoggedEvent("k2", "s1", "impression", "e1", NOW, NOW, user_id="u")
    joined = [(search, event), (search, impression)]
    assert rules.engaged_entities(joined) == {"e1"}
    profiles = {"u": Profile(user_id="u")}
    rules.engagements(joined, profiles, vectors={"e1": [0.0, 2.0]})
    assert profiles["u"].view(NOW).taste == [0.0, 1.0]
    untouched = {"u": Profile(user_id="u")}
    rules.engagements(joined, untouched)  # no vectors: counts, but no taste
    assert untouched["u"].engagements == 1
    assert untouched["u"].taste is None


def test_ltrr_without_a_generator_never_plans_it() -> None:
    policy, learns = make_policy("ltrr-without-personal", seed=1)
    assert learns
    assert isinstance(policy, WithoutStrategies)
    assert policy.excluded == {"personal", "personal_taste"}
    options = [
        StrategyOption(strategy=name, source_type=s.source_type, applicable=True)
        for name, s in strategies().items()
    ]
    decision_context = DecisionContext(
        query=query("rock"),
        user=UserProfile(user_id="u", taste=[1.0, 0.0, 0.0]),
        time=TimeContext.at(NOW),
        options=options,
    )
    for _ in range(50):
        plan = policy.decide(decision_context).plan
        assert not set(plan) & policy.excluded
    with pytest.raises(Exception, match="no strategy or source type"):
        make_policy("ltrr-without-nothing", seed=1)


def _catalog() -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    rng = random.Random(5)
    entities: list[dict[str, Any]] = []
    vectors: dict[str, list[float]] = {}
    for n in range(400):
        entities.append(
            {
                "id": f"track:{n}",
                "entity_type": "track",
                "title": f"Song {['Blue', 'Red', 'Gold', 'Grey'][n % 4]} Number {n}",
                "artist": f"Artist {n % 20}",
                "popularity": (n % 17) / 17,
                "genre": ["rock" if n % 2 else "pop"],
                "mood": [],
            }
        )
        vectors[f"track:{n}"] = [rng.gauss(0, 1) for _ in range(8)]
    entities += [
        {"id": f"artist:{a}", "entity_type": "artist", "title": f"Artist {a}", "popularity": 0.9}
        for a in range(20)
    ]
    return entities, vectors


def test_simulated_users_who_need_the_new_generators() -> None:
    entities, vectors = _catalog()
    world = build_world(entities, [], seed=3, users=10, pool=100, vectors=vectors, new_entities=16)
    stream = world.searches(2000)
    families = {s.intent.family for s in stream}
    assert {"related", "vague"} <= families
    # An artist's name wants the artist's most popular tracks, not the artist.
    related = next(s.intent for s in stream if s.intent.family == "related")
    artist = related.text.split()[-1]
    theirs = sorted(
        (e for e in entities if e.get("artist") == f"Artist {artist}"),
        key=lambda e: (-e["popularity"], e["id"]),
    )
    assert related.wanted == {e["id"] for e in theirs[:3]}
    # A vague query: what the user wants depends on who the user is.
    vague = [s for s in stream if s.intent.family == "vague" and s.intent.text == "rock"]
    wanted = {s.user.user_id: world.wanted(s) for s in vague}
    assert len(set(map(frozenset, wanted.values()))) > 1
    assert all(w <= vague[0].intent.wanted for w in wanted.values())
    # New entities arrive in batches through the first 80% of the run, unknown before.
    arrivals = world.arrivals(2000)
    assert sum(len(batch) for batch in arrivals.values()) == 16
    assert max(arrivals) <= 1600
    first = min(arrivals)
    new_ids = {n.id for n in world.newcomers}
    assert not any(s.intent.wanted & new_ids for s in stream[:first])
    assert any(s.intent.wanted & new_ids for s in stream[first:])
