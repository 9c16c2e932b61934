"""`ltrr evaluate`: recall and ranking quality of strategies, fixed combinations and their union
on a judged query set, all from the same single round trip per query; and the union ranked by
each given ranker (fused, LambdaMART) over the same feature matrix."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence

import ir_measures
from ir_measures import RR, R, nDCG
from opensearchpy import OpenSearch
from pydantic import BaseModel, Field

from .._errors import LtrrError
from ..ranking import (
    FeatureExtractor,
    Ranker,
    ranked,
    reciprocal_rank_fusion,
    union_candidates,
)
from ..strategies import StrategyContext, retrieve
from ..understanding import Lexicon, understand

MEASURES = {
    "recall@10": R @ 10,
    "recall@50": R @ 50,
    "recall@100": R @ 100,
    "recall@200": R @ 200,
    # Every candidate counts: what a reranker could still bring to the top.
    "recall@all": R @ 100_000,
    "ndcg@10": nDCG @ 10,
    "mrr": RR,
}
Run = dict[str, dict[str, float]]


class EvaluationRow(BaseModel):
    """Metrics of one strategy or one union of strategies (fused by reciprocal rank)."""

    name: str
    strategies: list[str]
    metrics: dict[str, float]
    mean_candidates: float
    failed_queries: int = 0


class EvaluationReport(BaseModel):
    queries: int
    judged_queries: int
    size: int
    rows: list[EvaluationRow]
    round_trip_ms: dict[str, float] = Field(default_factory=dict)


def _as_run(ids: Sequence[str]) -> dict[str, float]:
    # ir_measures orders by score: a strictly decreasing score keeps the strategy's own order.
    return {item: float(len(ids) - rank) for rank, item in enumerate(ids)}


def _measure(qrels: Mapping[str, Mapping[str, int]], run: Run) -> dict[str, float]:
    scores = ir_measures.calc_aggregate(list(MEASURES.values()), qrels, run)
    return {name: round(float(scores.get(measure, 0.0)), 4) for name, measure in MEASURES.items()}


def evaluate(
    client: OpenSearch,
    context: StrategyContext,
    lexicon: Lexicon,
    queries: Sequence[tuple[str, str]],
    qrels: Mapping[str, Mapping[str, int]],
    strategy_names: Sequence[str],
    combinations: Sequence[Sequence[str]] = (),
    size: int = 200,
    on_progress: Callable[[int], None] | None = None,
    rankers: Sequence[Ranker] = (),
) -> EvaluationReport:
    """Each judged query runs every strategy once (one _msearch/template); rows are computed for
    each strategy alone, each requested combination, the union of all, and the union ranked by
    each ranker ('union/<ranker>')."""
    if not strategy_names:
        raise LtrrError("no strategy to evaluate")
    judged = [
        (qid, text) for qid, text in queries if any(g > 0 for g in qrels.get(qid, {}).values())
    ]
    if not judged:
        raise LtrrError("no query of the query set has a relevant judgment in the qrels")
    groups: dict[str, list[str]] = {name: [name] for name in strategy_names}
    for combination in combinations:
        groups["+".join(combination)] = list(combination)
    groups["union"] = list(strategy_names)
    by_ranker = {f"union/{ranker.name}": ranker for ranker in rankers}
    groups.update({group: list(strategy_names) for group in by_ranker})
    extractor = FeatureExtractor(context.schema)
    needed = sorted({name for members in groups.values() for name in members})
    runs: dict[str, Run] = {name: {} for name in groups}
    candidates: dict[str, list[int]] = {name: [] for name in groups}
    failures: dict[str, int] = dict.fromkeys(groups, 0)
    round_trips: list[float] = []
    for done, (qid, text) in enumerate(judged, start=1):
        understood = understand(text, lexicon)
        retrieval = retrieve(client, dict.fromkeys(needed, size), understood, context)
        round_trips.append(retrieval.round_trip_ms)
        lists = {name: [c.id for c in r.candidates] for name, r in retrieval.results.items()}
        if by_ranker:
            union = union_candidates(
                {
                    name: [(c.id, c.score, c.source) for c in retrieval.results[name].candidates]
                    for name in strategy_names
                }
            )
            features = extractor.extract(understood, union)
        for group, members in groups.items():
            if any(retrieval.results[m].error for m in members):
                failures[group] += 1
            if group in by_ranker:
                scores = by_ranker[group].score_features(features).tolist()
                ids = ranked({c.id: s for c, s in zip(union, scores, strict=True)})
            elif len(members) == 1:
                ids = lists[members[0]]
            else:
                ids = ranked(reciprocal_rank_fusion({m: lists[m] for m in members}))
            runs[group][qid] = _as_run(ids)
            candidates[group].append(len(ids))
        if on_progress is not None:
            on_progress(done)
    judged_qrels = {qid: dict(qrels[qid]) for qid, _ in judged}
    rows = [
        EvaluationRow(
            name=group,
            strategies=members,
            metrics=_measure(judged_qrels, runs[group]),
            mean_candidates=round(statistics.fmean(candidates[group]), 1),
            failed_queries=failures[group],
        )
        for group, members in groups.items()
    ]
    ordered = sorted(round_trips)
    return EvaluationReport(
        queries=len(queries),
        judged_queries=len(judged),
        size=size,
        rows=rows,
        round_trip_ms={
            "p50": round(statistics.median(ordered), 1),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        },
    )
