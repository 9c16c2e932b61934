"""Benchmark the LambdaMART ranker on the real music catalog: training time for 100k logged
impressions, rerank latency (features + prediction) for 200 and 500 candidates, with the trained
model and with one at the size cap (every tree TrainConfig allows), and nDCG@10 / MRR of the union
ranked by the fused score and by LambdaMART on held-out queries.

    .venv/bin/python scripts/bench_ranker.py --index-prefix music- [--searches 10000]

Queries are real and judged: the editorial playlist titles (relevant: the playlist's tracks), and
track titles and artist names drawn by popularity (relevant: that track, that artist). They are
split by query, 70% to train on and 30% held out. Each query runs every strategy once against
the catalog (`--size` candidates each) and its union gets the serving feature matrix.

The logs are synthetic, since no real traffic of that size exists: searches draw training
queries at random and show the fused top 10 (impressions for all ten); a simulated user examines
rank k with probability 1/k (position bias), clicks an examined relevant result with probability
0.9 and any other with 0.05, and often plays or saves what was relevant. The searches and events
are written as UBI documents to a throw-away prefix (`bench-ranker-`) and the ranker is trained
from there, exactly as `ltrr train-ranker` does. Users have no profiles (user affinity is 0).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ir_measures
import lightgbm as lgb
from ir_measures import RR, nDCG
from opensearchpy import OpenSearch, helpers

from ltrr_os.catalog import build_music_catalog, catalog_schema, editorial_judgments, load_lexicon
from ltrr_os.config import load_schema, load_settings
from ltrr_os.embedding import load_encoder
from ltrr_os.feedback import APPLICATION
from ltrr_os.models import ModelStore, live_ranker, train_ranker
from ltrr_os.opensearch import bootstrap, connect
from ltrr_os.policy import UserProfile
from ltrr_os.ranking import (
    FeatureExtractor,
    FeatureMatrix,
    FusedRanker,
    LambdaMARTRanker,
    Ranker,
    RankerReport,
    TrainConfig,
    UnionCandidate,
    fit_ranker,
    load_logged_searches,
    union_candidates,
)
from ltrr_os.ranking._features import _analysed
from ltrr_os.strategies import StrategyContext, retrieve, strategies
from ltrr_os.understanding import UnderstoodQuery, understand

MUSIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "music"
BENCH_PREFIX = "bench-ranker-"
SHOWN = 10


@dataclass
class Judged:
    text: str
    relevant: frozenset[str]
    query: UnderstoodQuery
    union: list[UnionCandidate]
    features: FeatureMatrix


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cuts(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} / {percentile(values, 0.99):.2f}"


def _metrics(metrics: dict[str, float]) -> str:
    return f"nDCG@10 {metrics['ndcg@10']:.3f}  MRR {metrics['mrr']:.3f}"


def judged_queries(
    rng: random.Random, known_items: int, artists: int
) -> list[tuple[str, set[str]]]:
    """Editorial playlists, and track titles and artist names drawn by popularity."""
    found: dict[str, set[str]] = {}
    queries, qrels, _ = editorial_judgments(MUSIC)
    titles = dict(queries)
    for query_id, item, _ in qrels:
        found.setdefault(titles[query_id], set()).add(item)
    entities = build_music_catalog(MUSIC).entities
    for entity_type, count in (("track", known_items), ("artist", artists)):
        pool = [e for e in entities if e["entity_type"] == entity_type and e.get("popularity")]
        weights = [float(e["popularity"]) for e in pool]
        for entity in rng.choices(pool, weights=weights, k=count * 2):
            if entity["title"] not in found and count > 0:
                found[entity["title"]] = {entity["id"]}
                count -= 1
    return sorted(found.items())


def retrieve_all(
    client: OpenSearch, settings: Any, queries: list[tuple[str, set[str]]], size: int
) -> list[Judged]:
    schema = catalog_schema(client, settings)
    context = StrategyContext(settings=settings, schema=schema, encoder=load_encoder())
    lexicon = load_lexicon(client, settings)
    extractor = FeatureExtractor(schema)
    plan = dict.fromkeys(strategies(), size)
    judged = []
    for text, relevant in queries:
        understood = understand(text, lexicon)
        retrieval = retrieve(client, plan, understood, context)
        union = union_candidates(
            {
                name: [(c.id, c.score, c.source) for c in result.candidates]
                for name, result in retrieval.results.items()
            }
        )
        if union:
            features = extractor.extract(understood, union)
            judged.append(Judged(text, frozenset(relevant), understood, union, features))
    return judged


def simulated_logs(
    train: list[Judged], searches: int, rng: random.Random
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """UBI query and event documents of searches that showed the fused top 10."""
    fused = FusedRanker()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(searches):
        judged = rng.choice(train)
        scores = fused.score_features(judged.features)
        order = sorted(range(len(judged.union)), key=lambda i: (-scores[i], judged.union[i].id))
        shown = order[:SHOWN]
        search_id = f"bench-{n}"
        ids = [judged.union[i].id for i in shown]
        record = {
            "search_id": search_id,
            "text": judged.text,
            "timestamp": (start + timedelta(seconds=30 * n)).isoformat(),
            "results": ids,
            "ranker": fused.name,
            "feature_version": judged.features.schema.version,
            "features": judged.features.logged(shown),
        }
        events = [_event(search_id, "impression", item, rank) for rank, item in enumerate(ids, 1)]
        for rank, item in enumerate(ids, start=1):
            if rng.random() >= 1.0 / rank:
                continue
            wanted = item in judged.relevant
            if rng.random() < (0.9 if wanted else 0.05):
                events.append(_event(search_id, "click", item, rank))
                if wanted and rng.random() < 0.2:
                    events.append(_event(search_id, "add_to_favorites", item, rank))
                if wanted and rng.random() < 0.6:
                    events.append(_event(search_id, "playback", item, rank))
        query = {
            "application": APPLICATION,
            "query_id": search_id,
            "timestamp": record["timestamp"],
            "user_query": judged.text,
            "ltrr": record,
        }
        yield query, events


def _event(search_id: str, action: str, item: str, rank: int) -> dict[str, Any]:
    return {
        "application": APPLICATION,
        "action_name": action,
        "query_id": search_id,
        "event_attributes": {"object": {"object_id": item}, "position": {"ordinal": rank}},
    }


def write_logs(client: OpenSearch, settings: Any, logs: Iterator[Any]) -> tuple[int, int]:
    queries, events = settings.index_name("ubi_queries"), settings.index_name("ubi_events")
    counts = [0, 0]

    def actions() -> Iterator[dict[str, Any]]:
        for query, query_events in logs:
            counts[0] += 1
            yield {"_index": queries, "_id": query["query_id"], "_source": query}
            for event in query_events:
                counts[1] += 1
                yield {"_index": events, "_source": event}

    helpers.bulk(client, actions(), chunk_size=2000, request_timeout=120)
    client.indices.refresh(index=f"{queries},{events}")
    return counts[0], counts[1]


def quality(judged: list[Judged], ranker: Ranker) -> dict[str, float]:
    """nDCG@10 and MRR of the union ranked by `ranker`, against the judgments."""
    qrels = {str(n): dict.fromkeys(j.relevant, 1) for n, j in enumerate(judged)}
    run: dict[str, dict[str, float]] = {}
    for n, j in enumerate(judged):
        scores = ranker.score_features(j.features)
        order = sorted(range(len(j.union)), key=lambda i: (-scores[i], j.union[i].id))
        run[str(n)] = {j.union[i].id: float(len(order) - r) for r, i in enumerate(order)}
    found = ir_measures.calc_aggregate([nDCG @ 10, RR], qrels, run)
    return {"ndcg@10": found[nDCG @ 10], "mrr": found[RR]}


def latency(
    judged: list[Judged], ranker: LambdaMARTRanker, size: int, rounds: int, cold: bool
) -> tuple[list[float], list[float]]:
    """Feature extraction and prediction times (ms) for unions cut to `size` candidates."""
    extractor = ranker.extractor
    user = UserProfile(user_id="bench", affinities={"genre=rock": 0.4, "era=1980s": 0.3})
    pool = [j for j in judged if len(j.union) >= size]
    features_ms, predict_ms = [], []
    for n in range(rounds):
        j = pool[n % len(pool)]
        if cold:
            _analysed.cache_clear()  # titles and names seen for the first time
        started = time.perf_counter()
        matrix = extractor.extract(j.query, j.union[:size], user)
        middle = time.perf_counter()
        ranker.score_features(matrix)
        ended = time.perf_counter()
        features_ms.append((middle - started) * 1000)
        predict_ms.append((ended - middle) * 1000)
    return features_ms, predict_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-prefix", default="music-", help="an ingested music catalog")
    parser.add_argument("--searches", type=int, default=10_000, help="10 impressions each")
    parser.add_argument("--size", type=int, default=150, help="candidates per strategy")
    parser.add_argument("--known-items", type=int, default=400)
    parser.add_argument("--artists", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2000, help="timed reranks per size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the bench-ranker- indices")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = load_settings(index_prefix=args.index_prefix)
    client = connect(settings)

    clock = time.perf_counter()
    queries = judged_queries(rng, args.known_items, args.artists)
    judged = retrieve_all(client, settings, queries, args.size)
    rng.shuffle(judged)
    cut = int(0.7 * len(judged))
    train, held_out = judged[:cut], judged[cut:]
    mean_union = statistics.fmean(len(j.union) for j in judged)
    print(
        f"{len(judged)} judged queries ({len(train)} to log, {len(held_out)} held out), "
        f"mean union {mean_union:.0f} candidates, retrieved in {time.perf_counter() - clock:.0f} s"
    )

    bench = settings.model_copy(
        update={
            "index_prefix": BENCH_PREFIX,
            "model_dir": Path("/tmp/ltrr-bench-ranker") / f"{time.time_ns()}",
        }
    )
    client.indices.delete(index=f"{BENCH_PREFIX}*", ignore_unavailable=True)
    bootstrap(client, bench, load_schema("music"))
    try:
        clock = time.perf_counter()
        searches, events = write_logs(
            client, bench, simulated_logs(train, args.searches, random.Random(args.seed))
        )
        print(
            f"logged {searches} synthetic searches, {events} events "
            f"({searches * SHOWN} impressions) in {time.perf_counter() - clock:.1f} s"
        )
        config = TrainConfig()
        clock = time.perf_counter()
        record, decision, counts = train_ranker(client, bench, config)
        total = time.perf_counter() - clock
        report = RankerReport.model_validate(
            {k: v for k, v in record.metrics.items() if k in RankerReport.model_fields}
        )
        print(
            f"train-ranker: {total:.1f} s end to end (read {counts.searches} searches from "
            f"OpenSearch, build rows, fit, gate), LightGBM {report.training_seconds:.1f} s for "
            f"{report.rows} rows of {report.searches} engaged searches, "
            f"{report.best_iteration} trees -> {record.label}: {decision.reason}"
        )
        for name, metrics in report.validation.items():
            print(f"  validation {name:10s} {_metrics(metrics)}")
        top = list(report.importance_gain.items())[:6]
        print("  top features by gain: " + ", ".join(f"{k} {v:.0f}" for k, v in top))
        schema = FeatureExtractor(catalog_schema(client, bench)).schema
        data, _ = load_logged_searches(client, bench, schema)
        unaware = fit_ranker(data, config.model_copy(update={"position_aware": False}))
        ranker = live_ranker(
            ModelStore(client, bench), FeatureExtractor(catalog_schema(client, bench))
        )
        # No early stopping: every tree up to the cap, the slowest model training can save.
        capped = lgb.train(
            config.params(),
            lgb.Dataset(data.features, data.labels, group=data.sizes, position=data.positions),
            num_boost_round=config.max_rounds,
        )
    finally:
        if not args.keep:
            client.indices.delete(index=f"{BENCH_PREFIX}*", ignore_unavailable=True)

    assert ranker is not None
    booster, unaware_report = unaware
    rows: list[tuple[str, Ranker]] = [
        ("fused", FusedRanker()),
        (ranker.name, ranker),
        (
            "same, without position debiasing",
            LambdaMARTRanker(booster, ranker.extractor, unaware_report),
        ),
    ]
    print(f"\nheld-out queries ({len(held_out)}), the whole union ranked, judged relevance:")
    for name, each in rows:
        print(f"  {name:36s} {_metrics(quality(held_out, each))}")

    largest = LambdaMARTRanker(capped, ranker.extractor, ranker.report)
    print(f"\nrerank latency ({args.rounds} reranks per size), p50 / p99 ms:")
    for model, trees, colds in (
        (ranker, ranker.report.best_iteration, (False, True)),
        (largest, capped.num_trees(), (False,)),
    ):
        for size in (200, 500):
            for cold in colds:
                features, predict = latency(judged, model, size, args.rounds, cold)
                both = [a + b for a, b in zip(features, predict, strict=True)]
                label = "cold text cache" if cold else "warm"
                print(
                    f"  {trees:3d} trees, {size} candidates, {label:15s} features "
                    f"{_cuts(features)}, predict {_cuts(predict)}, total {_cuts(both)}"
                )


if __name__ == "__main__":
    main()
