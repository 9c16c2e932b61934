"""`ltrr evaluate`: recall and ranking quality of strategies, fixed combinations and their union
on a judged query set, each judged query run once through the serving pipeline (one
`_msearch/template` with every strategy), and the union ranked by each given ranker (fused,
LambdaMART) over the same feature matrix; plus plain BM25 over the schema's text fields, the
reference everyone knows.

Besides the table: a TREC run file per row (`runs/<row>.trec`) and per-query metrics
(`per_query.jsonl`), so ranx, trec_eval or pyserini can compare and fuse them."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ir_measures
from ir_measures import AP, RR, R, nDCG
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError
from pydantic import BaseModel, Field

from .._errors import LtrrError
from ..opensearch import opensearch_error
from ..pipeline import SearchPipeline
from ..policy import FixedPlanPolicy, UserProfile
from ..ranking import Ranker, ranked, reciprocal_rank_fusion

MEASURES = {
    "recall@10": R @ 10,
    "recall@50": R @ 50,
    "recall@100": R @ 100,
    "recall@200": R @ 200,
    # Every candidate counts: what a reranker could still bring to the top.
    "recall@all": R @ 100_000,
    "ndcg@10": nDCG @ 10,
    "map": AP,
    "mrr": RR,
}
BM25 = "bm25"
Run = dict[str, dict[str, float]]


class EvaluationRow(BaseModel):
    """Metrics of one strategy, one union of strategies, or one baseline."""

    name: str
    strategies: list[str]
    metrics: dict[str, float]
    mean_candidates: float
    failed_queries: int = 0


class EvaluationReport(BaseModel):
    queries: int
    judged_queries: int
    size: int
    truncated_queries: int = Field(
        default=0, description="queries longer than max_query_chars, cut at a word to fit"
    )
    rows: list[EvaluationRow]
    round_trip_ms: dict[str, float] = Field(default_factory=dict)


def _as_run(ids: Sequence[str]) -> dict[str, float]:
    # ir_measures orders by score: a strictly decreasing score keeps the given order.
    return {item: float(len(ids) - rank) for rank, item in enumerate(ids)}


def _fit(text: str, limit: int) -> str:
    """The text cut to at most `limit` characters at a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut.rsplit(None, 1)[0] if " " in cut.strip() else cut


def bm25(
    client: OpenSearch, index: str, fields: Sequence[str], texts: Sequence[str], size: int
) -> list[list[str]]:
    """Plain BM25: a `multi_match` over the text fields, default similarity, no boosts, no
    typo tolerance, no popularity; one `_msearch` for all texts."""
    body: list[dict[str, Any]] = []
    for text in texts:
        body += [
            {"index": index},
            {
                "size": size,
                "_source": False,
                "query": {"multi_match": {"query": text, "fields": list(fields)}},
                "sort": [{"_score": "desc"}, {"id": "asc"}],
            },
        ]
    try:
        responses = client.msearch(body=body, request_timeout=120)["responses"]
    except TransportError as exc:
        raise opensearch_error(exc) from None
    return [[hit["_id"] for hit in r.get("hits", {}).get("hits", [])] for r in responses]


def evaluate(
    pipeline: SearchPipeline,
    client: OpenSearch,
    queries: Sequence[tuple[str, str]],
    qrels: Mapping[str, Mapping[str, int]],
    strategy_names: Sequence[str],
    combinations: Sequence[Sequence[str]] = (),
    size: int = 200,
    on_progress: Callable[[int], None] | None = None,
    rankers: Sequence[Ranker] = (),
    out: Path | None = None,
) -> EvaluationReport:
    """Each judged query runs through the pipeline once with every strategy at `size`; rows
    for each strategy alone, each requested combination (fused by reciprocal rank), the union
    ranked by each ranker (`union/<ranker>`), and plain BM25. With `out`, the TREC runs and
    the per-query metrics are written there."""
    if not strategy_names:
        raise LtrrError("no strategy to evaluate")
    judged = [
        (qid, text) for qid, text in queries if any(g > 0 for g in qrels.get(qid, {}).values())
    ]
    if not judged:
        raise LtrrError("no query of the query set has a relevant judgment in the qrels")
    limit = pipeline.context.max_query_chars
    truncated = sum(len(text) > limit for _, text in judged)
    judged = [(qid, _fit(text, limit)) for qid, text in judged]
    groups: dict[str, list[str]] = {name: [name] for name in strategy_names}
    for combination in combinations:
        groups["+".join(combination)] = list(combination)
    by_ranker = {f"union/{ranker.name}": ranker for ranker in rankers}
    groups.update({group: list(strategy_names) for group in by_ranker})
    runs: dict[str, Run] = {name: {} for name in [*groups, BM25]}
    candidates: dict[str, list[int]] = {name: [] for name in runs}
    failures: dict[str, int] = dict.fromkeys(runs, 0)
    round_trips: list[float] = []
    plan = FixedPlanPolicy(dict.fromkeys(strategy_names, size), name="evaluate")
    moment = datetime.now(UTC)
    for done, (qid, text) in enumerate(judged, start=1):
        served = pipeline.search(
            text,
            policy=plan,
            ranker=pipeline.fused,
            user=UserProfile(),
            moment=moment,
            limit=size,
            exploration_seed=0,
            budget=size * len(strategy_names),
        )
        round_trips.append(served.retrieval.round_trip_ms)
        results = served.retrieval.results
        lists = {name: [c.id for c in r.candidates] for name, r in results.items()}
        for group, members in groups.items():
            if any(results[m].error for m in members if m in results):
                failures[group] += 1
            if group in by_ranker:
                ranking = pipeline.rank(
                    by_ranker[group], served.features, served.union, len(served.union)
                )
                ids = [served.union[i].id for i in ranking.order]
            elif len(members) == 1:
                ids = lists.get(members[0], [])
            else:
                ids = ranked(reciprocal_rank_fusion({m: lists.get(m, []) for m in members}))
            runs[group][qid] = _as_run(ids)
            candidates[group].append(len(ids))
        if on_progress is not None:
            on_progress(done)
    fields = sorted(pipeline.schema.text_fields)
    index = pipeline.context.settings.index_name("catalog")
    for start in range(0, len(judged), 50):
        chunk = judged[start : start + 50]
        for (qid, _), ids in zip(
            chunk, bm25(client, index, fields, [t for _, t in chunk], size), strict=True
        ):
            runs[BM25][qid] = _as_run(ids)
            candidates[BM25].append(len(ids))
    judged_qrels = {qid: dict(qrels[qid]) for qid, _ in judged}
    members_of = {**groups, BM25: [BM25]}
    rows = [
        EvaluationRow(
            name=group,
            strategies=members_of[group],
            metrics=_measure(judged_qrels, runs[group]),
            mean_candidates=round(statistics.fmean(candidates[group]), 1),
            failed_queries=failures[group],
        )
        for group in runs
    ]
    if out is not None:
        _write_runs(out, runs, judged_qrels)
    ordered = sorted(round_trips)
    return EvaluationReport(
        queries=len(queries),
        judged_queries=len(judged),
        size=size,
        truncated_queries=truncated,
        rows=rows,
        round_trip_ms={
            "p50": round(statistics.median(ordered), 1),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        },
    )


def _measure(qrels: Mapping[str, Mapping[str, int]], run: Run) -> dict[str, float]:
    scores = ir_measures.calc_aggregate(list(MEASURES.values()), qrels, run)
    return {name: round(float(scores.get(measure, 0.0)), 4) for name, measure in MEASURES.items()}


def run_file_name(row: str) -> str:
    """A file name for a row ('union/lambdamart-v2' -> 'union-lambdamart-v2.trec')."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", row) + ".trec"


def _write_runs(out: Path, runs: Mapping[str, Run], qrels: Mapping[str, Mapping[str, int]]) -> None:
    """A TREC run per row (qid Q0 doc rank score tag) and the per-query metrics of every row."""
    directory = out / "runs"
    directory.mkdir(parents=True, exist_ok=True)
    names = {measure: name for name, measure in MEASURES.items()}
    with (out / "per_query.jsonl").open("w", encoding="utf-8") as per_query:
        for row, run in runs.items():
            tag = re.sub(r"\s", "_", row)
            with (directory / run_file_name(row)).open("w", encoding="utf-8") as trec:
                for qid in sorted(run):
                    ordered = sorted(run[qid].items(), key=lambda kv: -kv[1])
                    for rank, (doc, score) in enumerate(ordered, start=1):
                        trec.write(f"{qid} Q0 {doc} {rank} {score:g} {tag}\n")
            values: dict[str, dict[str, float]] = {}
            for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, run):
                values.setdefault(metric.query_id, {})[names[metric.measure]] = round(
                    float(metric.value), 4
                )
            for qid in sorted(values):
                per_query.write(json.dumps({"row": row, "query_id": qid, **values[qid]}) + "\n")
