"""Ranking features, training data from UBI logs, LambdaMART training and versioned models."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from ltrr_os import LtrrError
from ltrr_os.config import CatalogSchema, load_schema
from ltrr_os.policy import UserProfile
from ltrr_os.ranking import (
    NOT_RETRIEVED_RANK,
    FeatureExtractor,
    FeatureSchema,
    FusedRanker,
    LoggedSearches,
    Provenance,
    TrainConfig,
    UnionCandidate,
    fit_ranker,
    logged_searches,
    ranker_from_bytes,
    ranker_to_bytes,
    ranking_quality,
    reciprocal_rank_fusion,
    union_candidates,
)
from ltrr_os.understanding import QueryFeatures, Reading, SlotMatch, UnderstoodQuery

MUSIC = load_schema("music")
STRATEGIES = ["lexical", "structured", "vector", "memory", "exploration"]


def _query(text: str = "Bohemian Rhapsody", slots: tuple[tuple[str, str], ...] = ()) -> Any:
    words = text.lower().split()
    features = QueryFeatures(
        length_chars=len(text),
        length_tokens=len(words),
        script="latin",
        language="en",
        has_numerals=False,
        has_year=False,
        typo_likelihood=0.1,
        query_type="known_item",
        query_type_scores={"known_item": 0.7, "topical": 0.2, "attribute": 0.1},
    )
    matches = [
        SlotMatch(
            slot=slot, value=value, confidence=0.9, start=0, end=1, matched=value, fuzzy=False
        )
        for slot, value in slots
    ]
    return UnderstoodQuery(
        text=text,
        normalized=" ".join(words),
        tokens=words,
        features=features,
        readings=[Reading(slots=matches, residual=text, likelihood=0.8)],
        memory_keys=[" ".join(words)],
    )


def _candidate(item: str, found: dict[str, tuple[int, float]], **source: Any) -> UnionCandidate:
    return UnionCandidate(
        id=item,
        source={"id": item, **source},
        provenance=[Provenance(strategy=s, rank=r, score=v) for s, (r, v) in found.items()],
    )


CANDIDATES = [
    _candidate(
        "track:queen--bohemian-rhapsody",
        {"lexical": (1, 12.5), "memory": (2, 3.0)},
        entity_type="track",
        title="Bohemian Rhapsody",
        artist="Queen",
        genre=["rock"],
        era=["1970s"],
        popularity_value=0.9,
    ),
    _candidate(
        "artist:queen", {"vector": (1, 0.8)}, entity_type="artist", title="Queen", artist="Queen"
    ),
    _candidate(
        "album:bohemian-rhapsody-soundtrack",
        {"exploration": (5, 1.0)},
        entity_type="album",
        title="Bohemian Rhapsody (The Soundtrack)",
        genre=["pop"],
    ),
]


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(MUSIC, STRATEGIES)


def test_the_feature_schema_follows_the_catalog_and_the_strategies(
    extractor: FeatureExtractor,
) -> None:
    names = extractor.schema.names
    for expected in (
        "lexical_score",
        "exploration_rank",
        "memory_hit",
        "strategies_hit",
        "fused_score",
        "popularity",
        "type_album",
        "title_exact",
        "artist_edit_distance",
        "slot_entity_type_match",
        "slot_genre_match",
        "user_affinity",
        "query_topical",
        "query_tokens",
        "query_typo",
        "query_slot_era",
    ):
        assert expected in names
    # The title and name-like fields are matched; the album (another title field) is not.
    assert not any(name.startswith("album_") for name in names)
    assert FeatureExtractor(MUSIC, STRATEGIES).schema == extractor.schema
    # The catalog's stored mapping does not keep the schema's key order: columns must not care.
    reordered = CatalogSchema.model_validate(
        json.loads(json.dumps(MUSIC.model_dump(), sort_keys=True))
    )
    assert list(reordered.fields) != list(MUSIC.fields)
    assert FeatureExtractor(reordered, STRATEGIES).schema == extractor.schema
    fewer = FeatureExtractor(MUSIC, STRATEGIES[:-1]).schema
    documents = FeatureExtractor(load_schema("documents"), STRATEGIES).schema
    assert len({extractor.schema.version, fewer.version, documents.version}) == 3
    assert "author_jaccard" in documents.names
    assert "type_document" in documents.names
    with pytest.raises(ValueError, match="unique"):
        FeatureSchema(version="x", names=["a", "a"])


def test_feature_values_of_hand_built_candidates(extractor: FeatureExtractor) -> None:
    user = UserProfile(user_id="u", affinities={"genre=rock": 0.5, "era=1970s": 0.25})
    query = _query(slots=(("artist", "Queen"), ("genre", "rock")))
    matrix = extractor.extract(query, CANDIDATES, user)
    track, artist, album = (
        {name: float(v) for name, v in zip(matrix.schema.names, row, strict=True)}
        for row in matrix.values
    )
    assert (track["lexical_score"], track["lexical_rank"], track["lexical_hit"]) == (12.5, 1, 1)
    assert (track["memory_score"], track["memory_rank"]) == (3.0, 2)
    assert (track["vector_score"], track["vector_rank"], track["vector_hit"]) == (
        0.0,
        NOT_RETRIEVED_RANK,
        0.0,
    )
    assert track["strategies_hit"] == 2
    assert track["fused_score"] == pytest.approx(1 / 61 + 1 / 62)
    assert (track["popularity"], artist["popularity"]) == (0.9, 0.0)
    assert (track["type_track"], track["type_artist"], artist["type_artist"]) == (1, 0, 1)
    assert album["type_album"] == 1
    assert (track["title_exact"], track["title_prefix"], track["title_edit_distance"]) == (1, 1, 0)
    assert (album["title_exact"], album["title_prefix"]) == (0, 1)
    assert album["title_jaccard"] == pytest.approx(2 / 4)  # {bohemian, rhapsody, the, soundtrack}
    # "queen" -> "bohemian rhapsody": only its e and n can stay, 15 edits of 17 characters.
    assert artist["title_edit_distance"] == pytest.approx(15 / 17)
    assert (album["artist_edit_distance"], album["artist_jaccard"]) == (1.0, 0.0)
    assert (track["slot_artist_match"], artist["slot_artist_match"]) == (1, 1)
    assert (album["slot_artist_match"], track["slot_genre_match"], album["slot_genre_match"]) == (
        0,
        1,
        0,
    )
    assert (track["query_slot_genre"], track["query_slot_era"], track["slot_era_match"]) == (
        1,
        0,
        0,
    )
    assert track["user_affinity"] == pytest.approx(0.75)
    assert (artist["user_affinity"], album["user_affinity"]) == (0.0, 0.0)
    assert (track["query_known_item"], track["query_topical"], album["query_tokens"]) == (1, 0, 2)
    assert album["query_typo"] == pytest.approx(0.1)


def _random_union(count: int, seed: int = 0) -> list[UnionCandidate]:
    rng = np.random.default_rng(seed)
    lists: dict[str, list[tuple[str, float, dict[str, Any]]]] = {}
    for strategy in STRATEGIES:
        picked = rng.choice(count, size=count // 2, replace=False)
        lists[strategy] = [
            (
                f"e{i}",
                float(rng.random() * 10),
                {
                    "entity_type": ["track", "artist", "album"][i % 3],
                    "title": f"song {i} of love" if i % 4 else "bohemian rhapsody",
                    "artist": f"artist {i % 17}",
                    "genre": [["rock"], ["pop", "rock"], []][i % 3],
                    "popularity_value": (i % 10) / 10,
                },
            )
            for i in picked.tolist()
        ]
    return union_candidates(lists)


def test_a_union_is_extracted_at_once_row_for_row_as_each_candidate_alone(
    extractor: FeatureExtractor,
) -> None:
    union = _random_union(600)
    user = UserProfile(user_id="u", affinities={"genre=rock": 0.6})
    query = _query(slots=(("genre", "rock"),))
    matrix = extractor.extract(query, union, user)
    assert matrix.values.shape == (len(union), len(extractor.schema.names))
    assert np.isfinite(matrix.values).all()
    for i in (0, 17, len(union) - 1):
        alone = extractor.extract(query, [union[i]], user).values[0]
        np.testing.assert_array_equal(matrix.values[i], alone)
    assert extractor.extract(query, [], user).values.shape == (0, len(extractor.schema.names))


def test_an_empty_query_or_odd_values_match_no_text(extractor: FeatureExtractor) -> None:
    matrix = extractor.extract(_query(text="  "), CANDIDATES)
    assert (matrix.column("title_edit_distance") == 1.0).all()
    assert (matrix.column("title_exact") == 0.0).all()
    odd = _candidate("x", {"lexical": (1, 1.0)}, title=["Bohemian", "Rhapsody"], artist=7)
    row = extractor.extract(_query(), [odd]).values[0]
    names = extractor.schema.names
    assert row[names.index("title_edit_distance")] == row[names.index("artist_edit_distance")] == 1
    assert row[names.index("title_jaccard")] == 0


@pytest.mark.parametrize("slots", [(), (("genre", "rock"),)])
def test_the_fused_ranker_is_reciprocal_rank_fusion_weighted_by_what_strategies_are(
    extractor: FeatureExtractor, slots: tuple[tuple[str, str], ...]
) -> None:
    """Exploration's random long tail counts a tenth; structured search as much as the query
    reads as its attributes (not at all without a reading with slots)."""
    union = _random_union(300, seed=3)
    query = _query(slots=slots)
    rankings = {
        s: [c.id for c in sorted(union, key=lambda c: _rank(c, s)) if _rank(c, s) < 10**6]
        for s in STRATEGIES
    }
    likelihood = max((r.likelihood for r in query.readings if r.slots), default=0.0)
    weights = {"exploration": 0.1, "structured": likelihood}
    fused = reciprocal_rank_fusion(rankings, weights)
    expected = [fused.get(c.id, 0.0) + 1e-4 * c.source["popularity_value"] for c in union]
    ranker = FusedRanker()
    np.testing.assert_allclose(
        ranker.score_features(extractor.extract(query, union)), expected, rtol=1e-12
    )


def _rank(candidate: UnionCandidate, strategy: str) -> int:
    return next((p.rank for p in candidate.provenance if p.strategy == strategy), 10**6)


def test_logged_rows_keep_six_significant_digits(extractor: FeatureExtractor) -> None:
    matrix = extractor.extract(_query(), CANDIDATES[:1])
    matrix.values[0, :3] = [1 / 3, 123456789.0, -0.000123456789]
    (row,) = matrix.logged([0])
    assert row[:3] == [0.333333, 123457000.0, -0.000123457]
    assert len(row) == len(extractor.schema.names)


# -- training data from the UBI logs ---------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _record(
    search_id: str, results: list[str], schema: FeatureSchema, minutes: int, version: str = ""
) -> dict[str, Any]:
    width = len(schema.names)
    return {
        "application": "ltrr-os",
        "query_id": search_id,
        "ltrr": {
            "search_id": search_id,
            "text": "whatever",
            "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
            "results": results,
            "feature_version": version or schema.version,
            "features": [[float(p)] * width for p in range(1, len(results) + 1)],
        },
    }


def _event(search_id: str, action: str, item: str) -> dict[str, Any]:
    return {
        "application": "ltrr-os",
        "query_id": search_id,
        "action_name": action,
        "event_attributes": {"object": {"object_id": item, "object_id_field": "id"}},
    }


def test_training_groups_labels_and_positions_from_logged_documents(
    extractor: FeatureExtractor,
) -> None:
    schema = extractor.schema
    queries = [
        _record("s1", ["a", "b", "c", "d", "e"], schema, minutes=10),
        _record("s2", ["f", "g"], schema, minutes=5),
        _record("s3", ["h"], schema, minutes=1, version="0-old"),
        _record("s4", ["x", "y"], schema, minutes=0),
        {"application": "ltrr-os", "query_id": "s5"},
        _record("s6", ["z"], schema, minutes=2),
    ]
    events = [
        *(_event("s1", "impression", item) for item in ("a", "b", "c")),
        _event("s1", "click", "b"),
        _event("s1", "add_to_favorites", "b"),
        _event("s1", "playback", "c"),
        _event("s1", "click", "d"),  # engaged without an impression: it was shown all the same
        _event("s1", "hover", "e"),  # not an impression, not an engagement
        _event("s2", "click", "f"),  # no impressions at all: not a group
        _event("s3", "impression", "h"),
        _event("s4", "impression", "y"),
        _event("s6", "impression", "not-a-result"),  # names none of its results: no group
    ]
    data, counts = logged_searches(queries, events, schema)
    assert data.search_ids == ["s4", "s1"]  # oldest first
    assert data.sizes == [1, 4]
    assert data.labels.tolist() == [0, 0, 2, 3, 1]
    assert data.positions.tolist() == [2, 1, 2, 3, 4]
    assert data.features[:, 0].tolist() == [2.0, 1.0, 2.0, 3.0, 4.0]
    assert (counts.searches, counts.groups, counts.engaged_groups) == (6, 2, 1)
    assert (counts.without_impressions, counts.other_features, counts.unreadable) == (2, 1, 1)
    engaged = data.engaged()
    assert (engaged.search_ids, engaged.sizes) == (["s1"], [4])
    older, newer = data.split_by_time(0.5)
    assert (older.search_ids, newer.search_ids) == (["s4"], ["s1"])
    assert newer.labels.tolist() == [0, 2, 3, 1]


def test_ranking_quality_is_ndcg_at_10_and_mrr_with_linear_gain() -> None:
    labels = np.array([0, 2, 3, 1, 0], dtype=np.int32)
    by_logged = ranking_quality(labels[:3], np.array([3.0, 2.0, 1.0]), [3])
    ideal = 3 + 2 / math.log2(3)
    assert by_logged["ndcg@10"] == pytest.approx((2 / math.log2(3) + 3 / 2) / ideal, abs=1e-4)
    assert by_logged["mrr"] == pytest.approx(0.5)
    # Ties keep the given order: all-equal scores rank as logged.
    assert ranking_quality(labels[:3], np.zeros(3), [3]) == by_logged
    perfect = ranking_quality(labels, np.array([0.0, 2, 3, 5, 1]), [3, 2])
    assert perfect == {"ndcg@10": 1.0, "mrr": 1.0}


# -- training, versions, loading -------------------------------------------------------------


def _synthetic(schema: FeatureSchema, searches: int, seed: int = 0) -> LoggedSearches:
    """Ten shown results per search; users want the exact title match wherever it is shown,
    and click the top more than the rest whatever it is (position bias)."""
    rng = np.random.default_rng(seed)
    width = len(schema.names)
    exact, fused = schema.names.index("title_exact"), schema.names.index("fused_score")
    features = rng.random((searches * 10, width))
    features[:, exact] = 0.0
    labels = np.zeros(searches * 10, dtype=np.int32)
    for group in range(searches):
        wanted = group * 10 + int(rng.integers(10))
        features[wanted, exact] = 1.0
        labels[wanted] = 3
        labels[group * 10] = max(labels[group * 10], 1)  # the top gets a click anyway
    features[:, fused] = rng.random(searches * 10)
    return LoggedSearches(
        schema=schema,
        features=features,
        labels=labels,
        positions=np.tile(np.arange(1, 11, dtype=np.int32), searches),
        sizes=[10] * searches,
        search_ids=[f"s{g}" for g in range(searches)],
        timestamps=[T0 + timedelta(minutes=g) for g in range(searches)],
    )


@pytest.fixture(scope="module")
def trained(extractor: FeatureExtractor) -> tuple[Any, Any]:
    return fit_ranker(_synthetic(extractor.schema, 200), TrainConfig(threads=1), logged=210)


def test_training_learns_the_signal_and_reports_it(
    extractor: FeatureExtractor, trained: tuple[Any, Any]
) -> None:
    booster, report = trained
    assert (report.searches, report.train_searches, report.validation_searches) == (200, 160, 40)
    assert (report.rows, report.logged_searches, report.held_out_searches) == (2000, 210, 0)
    assert report.trained_until == T0 + timedelta(minutes=199)
    assert report.position_bias.startswith("lightgbm position-aware")
    assert next(iter(report.importance_gain)) == "title_exact"
    learned, fused = report.validation["lambdamart"], report.validation["fused"]
    assert learned["mrr"] > 0.95  # the wanted result first, wherever it was shown
    assert learned["ndcg@10"] > fused["ndcg@10"] + 0.2
    assert set(report.validation) == {"lambdamart", "fused", "logged"}
    assert 1 <= report.best_iteration <= booster.current_iteration()
    assert report.feature_version == extractor.schema.version


def test_training_refuses_too_few_engaged_searches(extractor: FeatureExtractor) -> None:
    data = _synthetic(extractor.schema, 30)
    with pytest.raises(LtrrError, match=r"only 30 logged searches .* at least 50"):
        fit_ranker(data, TrainConfig())
    with pytest.raises(LtrrError, match=r"only 24 .* before the holdout"):
        fit_ranker(data, TrainConfig(min_searches=25, holdout=0.2))
    _, report = fit_ranker(data, TrainConfig(min_searches=20, holdout=0.2, threads=1))
    assert (report.searches, report.held_out_searches) == (24, 6)
    assert report.trained_until == T0 + timedelta(minutes=23)


def test_a_ranker_blob_scores_as_its_model(
    extractor: FeatureExtractor, trained: tuple[Any, Any]
) -> None:
    booster, report = trained
    ranker = ranker_from_bytes(ranker_to_bytes(booster, extractor.schema, report), extractor, 4)
    assert (ranker.name, ranker.version) == ("lambdamart-v4", 4)
    matrix = extractor.extract(_query(), CANDIDATES)
    np.testing.assert_allclose(
        ranker.score_features(matrix),
        booster.predict(matrix.values, num_iteration=report.best_iteration),
    )
    other = FeatureExtractor(MUSIC, STRATEGIES[:-1])
    with pytest.raises(LtrrError, match="ranks features"):
        ranker.score_features(other.extract(_query(), CANDIDATES))


def _edited_header(**changes: Any) -> Any:
    def edit(blob: bytes) -> bytes:
        header, _, model = blob.partition(b"\n")
        return json.dumps({**json.loads(header), **changes}).encode() + b"\n" + model

    return edit


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b.partition(b"\n")[0] + b"\ntree\ngarbage", "LightGBM cannot read"),
        (lambda b: b.replace(b"\n", b" ", 1), "problems in its header"),
        (lambda b: b.partition(b"\n")[0], "no header line"),
        (_edited_header(features=FeatureSchema.of(["a", "b"]).model_dump()), "train a new one"),
        (_edited_header(report={"version": 1}), "problems in its header"),
    ],
)
def test_a_damaged_or_foreign_ranker_blob_is_refused_with_a_reason(
    extractor: FeatureExtractor, trained: tuple[Any, Any], damage: Any, reason: str
) -> None:
    booster, report = trained
    blob = ranker_to_bytes(booster, extractor.schema, report)
    with pytest.raises(ValueError, match=reason):
        ranker_from_bytes(damage(blob), extractor)


def test_a_deployment_without_logs_is_refused_in_one_line(extractor: FeatureExtractor) -> None:
    """A freshly bootstrapped catalog: no search logged yet."""
    data, counts = logged_searches([], [], extractor.schema)
    assert (counts.searches, data.sizes, data.starts) == (0, [], [])
    with pytest.raises(LtrrError, match=r"only 0 logged searches .* at least 50"):
        fit_ranker(data, TrainConfig())
