"""The promotion gate for rankers: a new LambdaMART model serves only if it ranks held-out
logged searches at least as well as what serves now (the live model, else the fused score).

Training leaves the newest `holdout` share of the engaged searches out (20% unless asked
otherwise); both rankings are scored on exactly those searches, from the feature vectors logged
when they were served. A model that loses is stored as `rejected` with the figures that said no,
so an operator can still promote it (`ltrr models promote`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from pydantic import BaseModel

from .._errors import LtrrError
from ..catalog import catalog_schema
from ..config import LtrrSettings
from ..policy import LoggedRound, estimate
from ..ranking import (
    FeatureExtractor,
    LambdaMARTRanker,
    LogCounts,
    TrainConfig,
    fit_ranker,
    load_logged_searches,
    ranker_from_bytes,
    ranker_to_bytes,
)
from ._store import ModelStore, ModelVersion

log = logging.getLogger(__name__)

RANKER_NAME = "lambdamart"
GATE_HOLDOUT = 0.2
GATE_METRIC = "ndcg@10"
KEEP_VERSIONS = 20


class GateDecision(BaseModel):
    promote: bool
    reason: str
    metrics: dict[str, Any]


def live_ranker(
    store: ModelStore, extractor: FeatureExtractor, name: str = RANKER_NAME
) -> LambdaMARTRanker | None:
    """The live ranker, else the newest intact version promoted before it (a damaged or
    incompatible live version is reported, and the one before it serves); None when no
    promoted version loads."""
    pointer = store.pointer("ranker", name)
    if pointer is None:
        return None
    for version in [pointer.version, *pointer.previous]:
        try:
            record, blob = store.load("ranker", name, version)
            return ranker_from_bytes(blob, extractor, record.version)
        except (LtrrError, ValueError) as exc:
            log.warning(
                "ranker %s v%d cannot serve (%s); trying the one before", name, version, exc
            )
    return None


def train_ranker(
    client: OpenSearch,
    settings: LtrrSettings,
    config: TrainConfig | None = None,
    store: ModelStore | None = None,
    keep_versions: int = KEEP_VERSIONS,
) -> tuple[ModelVersion, GateDecision, LogCounts]:
    """Train a ranker from this deployment's logs, store it, promote it if it passes the gate,
    and keep the newest `keep_versions` (never the live one or the one before it). Raises
    LtrrError (one line) when the logs hold too few engaged searches."""
    config = config or TrainConfig()
    if config.holdout == 0:
        config = config.model_copy(update={"holdout": GATE_HOLDOUT})
    store = store or ModelStore(client, settings)
    extractor = FeatureExtractor(catalog_schema(client, settings))
    data, counts = load_logged_searches(client, settings, extractor.schema)
    booster, report = fit_ranker(data, config, logged=counts.searches)
    _, held_out = data.engaged().split_by_time(config.holdout)
    live = live_ranker(store, extractor)
    candidate = np.asarray(
        booster.predict(held_out.features, num_iteration=report.best_iteration), dtype=np.float64
    )
    serving = live.score_features(held_out.matrix()) if live is not None else held_out.fused()
    decision = gate(
        held_out.quality(candidate),
        held_out.quality(serving),
        live.name if live is not None else "fused",
        len(held_out.sizes),
    )
    record = store.publish(
        "ranker",
        RANKER_NAME,
        ranker_to_bytes(booster, extractor.schema, report),
        status="promoted" if decision.promote else "rejected",
        metrics={**report.model_dump(mode="json"), "gate": decision.metrics},
        trained_on={
            "searches": report.searches,
            "train_searches": report.train_searches,
            "held_out_searches": report.held_out_searches,
            "trained_until": report.trained_until.isoformat(),
            "log": settings.index_name("ubi_queries"),
        },
        parent=live.version if live is not None else None,
        reason=decision.reason,
        feature_version=extractor.schema.version,
    )
    store.prune("ranker", RANKER_NAME, keep_versions)
    return record, decision, counts


def gate(
    candidate: dict[str, float], serving: dict[str, float], serving_name: str, searches: int
) -> GateDecision:
    """Promote when the candidate's nDCG@10 on the held-out searches is at least the serving
    ranking's."""
    new, old = candidate.get(GATE_METRIC, 0.0), serving.get(GATE_METRIC, 0.0)
    metrics = {"held_out_searches": searches, "candidate": candidate, serving_name: serving}
    if searches == 0:
        return GateDecision(
            promote=False, reason="no held-out searches to compare on", metrics=metrics
        )
    verdict = "beats or equals" if new >= old else "is worse than"
    reason = (
        f"nDCG@10 {new:.4f} {verdict} {serving_name}'s {old:.4f} on {searches} held-out searches"
    )
    return GateDecision(promote=new >= old, reason=reason, metrics=metrics)


MIN_POLICY_GATE_ROUNDS = 50


def policy_gate(held_out: Sequence[LoggedRound]) -> GateDecision:
    """Promote a policy rebuilt from the log when its estimated reward on the newest logged
    decisions (a doubly robust estimate, bootstrap 95% interval) is not below the interval of
    what the live, logging policy earned on them (the on-policy mean). The rebuilt policy
    learned from those decisions too, so its estimate leans its way; the gate stops a
    rebuild that is worse even so, not one that is merely no better."""
    metrics: dict[str, Any] = {"held_out_decisions": len(held_out)}
    if len(held_out) < MIN_POLICY_GATE_ROUNDS:
        reason = (
            f"{len(held_out)} held-out decisions with their plan distribution: too few to "
            f"compare (at least {MIN_POLICY_GATE_ROUNDS})"
        )
        return GateDecision(promote=False, reason=reason, metrics=metrics)
    new = estimate(held_out)
    live = estimate(
        [replace(r, target=dict(r.logging or {r.action: r.propensity})) for r in held_out]
    )
    metrics |= {
        "candidate_dr": new.dr.model_dump(),
        "live_on_policy": live.ips.model_dump(),
        "matches": new.matches,
        "effective_sample_size": new.effective_sample_size,
    }
    value, low = new.dr.value, live.ips.low
    if value is None or low is None:
        reason = "the logs never chose what it would choose: no support to estimate it on"
        return GateDecision(promote=False, reason=reason, metrics=metrics)
    promote = value >= low
    reason = (
        f"estimated reward {value:.4f} [{new.dr.low:.4f}, {new.dr.high:.4f}] on "
        f"{len(held_out)} held-out decisions {'is not below' if promote else 'is below'} the "
        f"live policy's {live.ips.value:.4f} [{low:.4f}, {live.ips.high:.4f}]"
    )
    return GateDecision(promote=promote, reason=reason, metrics=metrics)
