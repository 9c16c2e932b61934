"""The learned ranker on a real node: searches log their features, a LambdaMART model is trained
from the UBI logs, clients hot-reload it, and both evaluations compare it with the fused ranking.

Simulated users want albums: each search shows ten results (impressions), and the user plays the
best-ranked album among them, wherever it is. Each query is asked once, so the Q2E memory cannot
learn the preference for later queries; only the ranker can."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from ltrr_os import LTRRClient, SearchContext
from ltrr_os.catalog import (
    SourceRow,
    build_music_catalog,
    ingest_rows,
    load_lexicon,
    refresh_lexicon,
)
from ltrr_os.config import LtrrSettings
from ltrr_os.embedding import Encoder
from ltrr_os.evaluation import evaluate
from ltrr_os.models import ModelStore, ModelVersion, live_ranker, train_ranker
from ltrr_os.opensearch import bootstrap
from ltrr_os.pipeline import SearchPipeline, opensearch_retriever
from ltrr_os.policy import FixedPlanPolicy
from ltrr_os.ranking import (
    FeatureExtractor,
    FeatureMatrix,
    FusedRanker,
    RankerReport,
    TrainConfig,
)
from ltrr_os.strategies import StrategyContext, strategies

from .conftest import MUSIC, MUSIC_DIR

ARTISTS = {"Queen", "Green Day", "AC/DC", "Taylor Swift", "Bon Jovi"}
LOGGED_QUERIES = 90
PLAN = FixedPlanPolicy({"*": 30})


@dataclass(frozen=True)
class Logs:
    settings: LtrrSettings
    albums: frozenset[str]
    later_queries: list[str]
    engaged: int
    engaged_rows: int


@pytest.fixture(scope="module")
def logs(
    settings: LtrrSettings,
    os_client: OpenSearch,
    encoder: Encoder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Logs]:
    """A catalog of five artists of its own (so no other test's searches are in its logs), and
    the UBI logs of 90 searches by users who play albums."""
    root = tmp_path_factory.mktemp("ranker-logs")
    own = settings.model_copy(
        update={
            "index_prefix": f"{settings.index_prefix}ranker-",
            "model_dir": root / "models",
            "spool_dir": root / "spool",
        }
    )
    bootstrap(os_client, own, MUSIC)
    entities = [e for e in build_music_catalog(MUSIC_DIR).entities if e.get("artist") in ARTISTS]
    rows = [SourceRow("artists", i, e) for i, e in enumerate(entities)]
    assert ingest_rows(os_client, own, MUSIC, rows, encoder).rejected == []
    refresh_lexicon(os_client, own, MUSIC)
    titles = sorted({e["title"] for e in entities if e["entity_type"] == "track"})
    random.Random(7).shuffle(titles)
    engaged = engaged_rows = 0
    with LTRRClient(own, opensearch=os_client, encoder=encoder, policy=PLAN) as client:
        for i, text in enumerate(titles[:LOGGED_QUERIES]):
            response = client.search(text, SearchContext(user_id=f"user-{i % 5}"), limit=10)
            events = [
                {
                    "search_id": response.search_id,
                    "action": "impression",
                    "object_id": r.id,
                    "position": r.rank,
                }
                for r in response.results
            ]
            album = next((r for r in response.results if r.entity_type == "album"), None)
            if album is not None:
                events.append({**events[album.rank - 1], "action": "playback"})
                engaged += 1
                engaged_rows += len(response.results)
            assert client.feedback(events).rejected == []
        assert client.flush() == 0
    yield Logs(
        settings=own,
        albums=frozenset(e["id"] for e in entities if e["entity_type"] == "album"),
        later_queries=titles[LOGGED_QUERIES : LOGGED_QUERIES + 20],
        engaged=engaged,
        engaged_rows=engaged_rows,
    )
    os_client.indices.delete(index=f"{own.index_prefix}*")


def _with_models(logs: Logs, tmp_path: Path, **update: object) -> LtrrSettings:
    return logs.settings.model_copy(
        update={"model_dir": tmp_path / "models", "spool_dir": tmp_path / "spool", **update}
    )


def test_searches_log_the_features_of_the_results_they_showed(
    logs: Logs, os_client: OpenSearch
) -> None:
    extractor = FeatureExtractor(MUSIC)
    index = logs.settings.index_name("ubi_queries")
    os_client.indices.refresh(index=index)
    hits = os_client.search(index=index, body={"size": 5, "query": {"match_all": {}}})
    assert hits["hits"]["total"]["value"] == LOGGED_QUERIES
    for hit in hits["hits"]["hits"]:
        record = hit["_source"]["ltrr"]
        assert record["ranker"] == "fused"
        assert record["feature_version"] == extractor.schema.version
        assert len(record["features"]) == len(record["results"]) > 0
        assert {len(vector) for vector in record["features"]} == {len(extractor.schema.names)}
        assert record["features"][0][extractor.schema.names.index("fused_score")] > 0
        assert all(float(f"{v:.6g}") == v for vector in record["features"] for v in vector)
    assert 30 <= logs.engaged < LOGGED_QUERIES


def _report(record: ModelVersion) -> RankerReport:
    return RankerReport.model_validate(
        {k: v for k, v in record.metrics.items() if k in RankerReport.model_fields}
    )


def test_a_ranker_trained_from_the_logs_is_hot_reloaded_and_ranks_what_users_want(
    logs: Logs, os_client: OpenSearch, encoder: Encoder, tmp_path: Path
) -> None:
    own = _with_models(logs, tmp_path, model_reload_s=0.1)
    fused_settings = _with_models(logs, tmp_path / "fused")
    with (
        LTRRClient(own, opensearch=os_client, encoder=encoder, policy=PLAN) as client,
        LTRRClient(
            fused_settings, opensearch=os_client, encoder=encoder, policy=PLAN, ranker=FusedRanker()
        ) as fused,
    ):
        assert client.search("queen", limit=5).ranker == "fused"
        record, decision, counts = train_ranker(
            os_client, own, TrainConfig(min_searches=20, threads=1)
        )
        assert (record.version, record.status, decision.promote) == (1, "promoted", True)
        assert "fused" in decision.reason
        report = _report(record)
        assert (counts.groups, counts.engaged_groups) == (LOGGED_QUERIES, logs.engaged)
        assert report.held_out_searches == round(0.2 * logs.engaged)  # what the gate judged on
        assert report.searches == logs.engaged - report.held_out_searches
        assert report.train_searches + report.validation_searches == report.searches
        validation = report.validation
        # The logged features reproduce the served (fused) order exactly.
        assert validation["logged"] == validation["fused"]
        assert validation["lambdamart"]["mrr"] > validation["fused"]["mrr"] + 0.3
        assert next(iter(report.importance_gain)).startswith("type_")

        deadline = time.monotonic() + 10
        while client.search("queen", limit=5).ranker != "lambdamart-v1":
            assert time.monotonic() < deadline, "the new ranker was not loaded"
            time.sleep(0.1)
        learned = fused_wins = shown = 0
        for text in logs.later_queries:
            response = client.search(text, limit=10)
            assert response.ranker == "lambdamart-v1"
            baseline = fused.search(text, limit=10)
            assert baseline.ranker == "fused"
            if any(r.entity_type == "album" for r in response.results):
                shown += 1
                learned += response.results[0].entity_type == "album"
                fused_wins += baseline.results[0].entity_type == "album"
        assert shown >= 10
        assert learned >= 0.9 * shown
        assert fused_wins <= 0.3 * shown

    with LTRRClient(own, opensearch=os_client, encoder=encoder, policy=PLAN) as fresh:
        assert fresh.search("green day", limit=3).ranker == "lambdamart-v1"

    ranker = live_ranker(ModelStore(os_client, own), FeatureExtractor(MUSIC))
    assert ranker is not None
    context = StrategyContext(
        settings=logs.settings, schema=MUSIC, encoder=encoder, timeout_ms=5000
    )
    pipeline = SearchPipeline(
        MUSIC,
        load_lexicon(os_client, logs.settings),
        context,
        opensearch_retriever(os_client),
        budget=own.candidate_budget,
    )
    queries = [(f"q{i}", text) for i, text in enumerate(logs.later_queries)]
    qrels = {qid: dict.fromkeys(logs.albums, 1) for qid, _ in queries}
    judged = evaluate(
        pipeline,
        os_client,
        queries,
        qrels,
        list(strategies()),
        size=30,
        rankers=[FusedRanker(), ranker],
        out=tmp_path / "eval",
    )
    rows = {row.name: row for row in judged.rows}
    by_fused, by_model = rows["union/fused"], rows["union/lambdamart-v1"]
    assert by_fused.metrics["recall@all"] == by_model.metrics["recall@all"]
    assert "bm25" in rows
    runs = sorted(p.name for p in (tmp_path / "eval" / "runs").iterdir())
    assert "union-lambdamart-v1.trec" in runs
    assert "bm25.trec" in runs
    first = (tmp_path / "eval" / "runs" / "bm25.trec").read_text().splitlines()[0].split()
    assert (first[1], first[3]) == ("Q0", "1")
    assert by_model.metrics["mrr"] > by_fused.metrics["mrr"] + 0.3
    assert by_model.metrics["ndcg@10"] > by_fused.metrics["ndcg@10"]


class _Broken(FusedRanker):
    name = "broken"

    def score_features(self, features: FeatureMatrix) -> Any:
        raise RuntimeError("the model file went away")


def test_a_failing_ranker_falls_back_to_the_fused_ranking(
    logs: Logs,
    os_client: OpenSearch,
    encoder: Encoder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    own = _with_models(logs, tmp_path)
    # No exploration: it samples per search, and the two searches must find the same union.
    plan = FixedPlanPolicy({"lexical": 30, "structured": 30, "vector": 30, "memory": 30})
    with LTRRClient(
        own, opensearch=os_client, encoder=encoder, policy=plan, ranker=FusedRanker()
    ) as reference:
        expected = [r.id for r in reference.search("queen", limit=5).results]
    with (
        caplog.at_level(logging.ERROR),
        LTRRClient(
            own.model_copy(update={"spool_dir": tmp_path / "other"}),
            opensearch=os_client,
            encoder=encoder,
            policy=plan,
            ranker=_Broken(),
        ) as client,
    ):
        response = client.search("queen", limit=5)
    assert response.ranker == "fused"
    assert [r.id for r in response.results] == expected
    assert any("ranker broken failed" in record.message for record in caplog.records)


def _ltrr(logs: Logs, model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(model_dir),
        "LTRR_OPENSEARCH_URL": logs.settings.opensearch_url,
        "LTRR_MODEL_DIR": str(model_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "ltrr_os", "--index-prefix", logs.settings.index_prefix, *args],
        capture_output=True,
        text=True,
        cwd=model_dir,
        env=env,
        timeout=300,
    )


def test_the_cli_trains_with_a_holdout_and_evaluates_on_it(
    logs: Logs, os_client: OpenSearch, tmp_path: Path
) -> None:
    store = ModelStore(os_client, logs.settings)
    before = len(store.versions("ranker"))
    refused = _ltrr(logs, tmp_path, "train-ranker", "--min-searches", "1000")
    assert refused.returncode == 2
    assert f"only {logs.engaged - round(0.2 * logs.engaged)} logged searches" in refused.stderr
    assert "at least 1000" in refused.stderr
    assert len(store.versions("ranker")) == before

    trained = _ltrr(logs, tmp_path, "train-ranker", "--min-searches", "20", "--holdout", "0.2")
    assert trained.returncode == 0, trained.stderr
    newest = store.versions("ranker")[0]
    assert f"stored ranker lambdamart v{newest.version}" in trained.stdout
    assert "held-out searches" in trained.stdout
    report = _report(newest)
    assert report.held_out_searches == round(0.2 * logs.engaged)

    evaluated = _ltrr(
        logs, tmp_path, "evaluate", "--logged", "--holdout", "0.2", "--out", str(tmp_path / "eval")
    )
    assert evaluated.returncode == 0, evaluated.stderr
    live = live_ranker(store, FeatureExtractor(MUSIC))
    assert live is not None
    assert live.name in evaluated.stdout
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["searches"] == report.held_out_searches
    metrics = {row["name"]: row["metrics"] for row in result["rows"]}
    assert set(metrics) == {"logged", "fused", live.name}
    assert metrics[live.name]["mrr"] > metrics["fused"]["mrr"] + 0.3
