"""`ltrr train-ranker`: a LightGBM LambdaMART model from the UBI logs.

Training rows are the results a search showed, with the feature vectors the client logged when
it ranked them (the same features it will score), labelled by what the user did: playback 3,
add to favourites 2, click 1, shown and skipped 0. A result counts as shown when it had an
impression (or an engagement); results never shown are not rows, and a search without
impressions is not a group.

Position bias: users click what is on top whatever it is, so clicks overrate the top positions.
Training uses LightGBM's position-aware lambdarank (Unbiased LambdaMART: the Dataset's
`position`), which estimates the examination bias of each position jointly with the model from
the clicks themselves. Inverse propensity weighting would need the propensities first, and they
can only be measured by randomising result order, which ltrr-os does not do; so IPW is not used.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from opensearchpy import OpenSearch, helpers
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._errors import LtrrError
from ..config import LtrrSettings
from ..feedback import APPLICATION
from ._features import FeatureMatrix, FeatureSchema, Matrix
from ._lambdamart import RankerReport
from ._metrics import ranking_quality
from ._rankers import FusedRanker

GRADES: dict[str, int] = {"playback": 3, "add_to_favorites": 2, "click": 1}
"""The label of a shown result: its strongest engagement (0: shown and skipped)."""
IMPRESSION = "impression"
POSITION_AWARE = "lightgbm position-aware lambdarank (Unbiased LambdaMART)"

Labels = npt.NDArray[np.int32]


class LogCounts(BaseModel):
    """What the logs held, and why searches were not used."""

    searches: int = 0
    without_impressions: int = 0
    other_features: int = Field(
        default=0, description="logged with another feature schema, or without features"
    )
    unreadable: int = 0
    groups: int = 0
    engaged_groups: int = 0


@dataclass(frozen=True)
class LoggedSearches:
    """Shown results of logged searches, grouped by search, oldest search first."""

    schema: FeatureSchema
    features: Matrix
    labels: Labels
    positions: Labels
    sizes: list[int]
    search_ids: list[str]
    timestamps: list[datetime]

    @property
    def starts(self) -> list[int]:
        """Where each group's rows begin (none for no groups)."""
        starts: list[int] = (np.cumsum([0, *self.sizes])[:-1]).astype(int).tolist()
        return starts

    def take(self, groups: Sequence[int]) -> LoggedSearches:
        """These groups, in the order given."""
        starts = self.starts
        rows = np.asarray(
            [r for g in groups for r in range(starts[g], starts[g] + self.sizes[g])], dtype=int
        )
        return LoggedSearches(
            schema=self.schema,
            features=self.features[rows],
            labels=self.labels[rows],
            positions=self.positions[rows],
            sizes=[self.sizes[g] for g in groups],
            search_ids=[self.search_ids[g] for g in groups],
            timestamps=[self.timestamps[g] for g in groups],
        )

    def engaged(self) -> LoggedSearches:
        """Only the searches where the user engaged with something (the others teach nothing:
        every pair of their rows is a tie)."""
        starts = self.starts
        return self.take(
            [
                g
                for g, (start, size) in enumerate(zip(starts, self.sizes, strict=True))
                if self.labels[start : start + size].max(initial=0) > 0
            ]
        )

    def split_by_time(self, newest: float) -> tuple[LoggedSearches, LoggedSearches]:
        """The older searches, and the newest `newest` share of them."""
        count = len(self.sizes)
        cut = count - round(newest * count)
        return self.take(range(cut)), self.take(range(cut, count))

    def quality(self, scores: npt.NDArray[np.float64]) -> dict[str, float]:
        return ranking_quality(self.labels, scores, self.sizes)

    def logged_order(self) -> npt.NDArray[np.float64]:
        """Scores that rank each search's rows in the order they were shown."""
        order: npt.NDArray[np.float64] = -self.positions.astype(np.float64)
        return order

    def matrix(self) -> FeatureMatrix:
        return FeatureMatrix(self.schema, self.features)

    def fused(self) -> npt.NDArray[np.float64]:
        return FusedRanker().score_features(self.matrix())


class _LoggedRanking(BaseModel):
    """The part of a logged SearchRecord that training reads."""

    model_config = ConfigDict(extra="ignore")

    search_id: str
    timestamp: datetime
    results: list[str]
    feature_version: str | None = None
    features: list[list[float]] = Field(default_factory=list)


LOGGED_FIELDS = [f"ltrr.{name}" for name in _LoggedRanking.model_fields]


def logged_searches(
    queries: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    schema: FeatureSchema,
) -> tuple[LoggedSearches, LogCounts]:
    """Training groups from UBI query documents (with ltrr-os' record under `ltrr`) and UBI
    event documents: one group per search with impressions, one row per shown result."""
    shown: dict[str, set[str]] = defaultdict(set)
    grades: dict[str, dict[str, int]] = defaultdict(dict)
    impressed: set[str] = set()
    for event in events:
        search_id = str(event.get("query_id"))
        action = event.get("action_name")
        item = ((event.get("event_attributes") or {}).get("object") or {}).get("object_id")
        if not item:
            continue
        if action == IMPRESSION:
            impressed.add(search_id)
            shown[search_id].add(str(item))
        elif (grade := GRADES.get(str(action))) is not None:
            shown[search_id].add(str(item))
            best = grades[search_id]
            best[str(item)] = max(grade, best.get(str(item), 0))
    counts = LogCounts()
    records: list[_LoggedRanking] = []
    for document in queries:
        counts.searches += 1
        try:
            record = _LoggedRanking.model_validate(document["ltrr"])
        except (KeyError, TypeError, ValidationError):
            counts.unreadable += 1
            continue
        if record.search_id not in impressed:
            counts.without_impressions += 1
        elif (
            record.feature_version != schema.version
            or len(record.features) != len(record.results)
            or any(len(vector) != len(schema.names) for vector in record.features)
        ):
            counts.other_features += 1
        else:
            records.append(record)
    records.sort(key=lambda r: (r.timestamp, r.search_id))
    kept: list[_LoggedRanking] = []
    vectors: list[list[float]] = []
    labels: list[int] = []
    positions: list[int] = []
    sizes: list[int] = []
    for record in records:
        seen, graded = shown[record.search_id], grades.get(record.search_id, {})
        rows = [
            (vector, graded.get(item, 0), position)
            for position, (item, vector) in enumerate(
                zip(record.results, record.features, strict=True), start=1
            )
            if item in seen
        ]
        if not rows:  # its impressions name none of its results
            counts.without_impressions += 1
            continue
        kept.append(record)
        sizes.append(len(rows))
        for vector, label, position in rows:
            vectors.append(vector)
            labels.append(label)
            positions.append(position)
        counts.engaged_groups += any(label > 0 for _, label, _ in rows)
    counts.groups = len(kept)
    data = LoggedSearches(
        schema=schema,
        features=np.asarray(vectors, dtype=np.float64).reshape(len(vectors), len(schema.names)),
        labels=np.asarray(labels, dtype=np.int32),
        positions=np.asarray(positions, dtype=np.int32),
        sizes=sizes,
        search_ids=[r.search_id for r in kept],
        timestamps=[r.timestamp for r in kept],
    )
    return data, counts


def _scan(client: OpenSearch, index: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    query = {"query": {"term": {"application": APPLICATION}}, "_source": fields}
    for hit in helpers.scan(client, index=index, query=query, size=1000, preserve_order=False):
        yield hit["_source"]


def load_logged_searches(
    client: OpenSearch, settings: LtrrSettings, schema: FeatureSchema
) -> tuple[LoggedSearches, LogCounts]:
    """Training groups from this deployment's UBI indices."""
    queries_index, events_index = (
        settings.index_name("ubi_queries"),
        settings.index_name("ubi_events"),
    )
    client.indices.refresh(index=f"{queries_index},{events_index}")
    events = _scan(
        client,
        events_index,
        ["query_id", "action_name", "event_attributes.object.object_id"],
    )
    return logged_searches(_scan(client, queries_index, LOGGED_FIELDS), events, schema)


class TrainConfig(BaseModel):
    """How to train: data requirements, splits, position bias and LightGBM's parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_searches: int = Field(default=50, ge=1, description="engaged searches needed to train")
    validation: float = Field(default=0.2, gt=0, lt=1, description="share of searches, random")
    holdout: float = Field(
        default=0.0, ge=0, lt=1, description="newest share left out, for `evaluate --logged`"
    )
    position_aware: bool = True
    # Small trees, few of them: prediction time grows with both, and it is paid on every search.
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    num_leaves: int = Field(default=15, ge=2)
    min_data_in_leaf: int = Field(default=20, ge=1)
    max_rounds: int = Field(default=100, ge=1)
    early_stopping_rounds: int = Field(default=20, ge=1)
    threads: int = Field(default=0, ge=0, description="0: LightGBM's default (all cores)")
    seed: int = 0

    def params(self) -> dict[str, Any]:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "label_gain": [float(g) for g in range(max(GRADES.values()) + 1)],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": self.threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


def fit_ranker(
    data: LoggedSearches, config: TrainConfig, logged: int = 0
) -> tuple[lgb.Booster, RankerReport]:
    """Train on the engaged searches (less the newest `holdout` share), early-stopped on the
    validation searches' nDCG@10; the report compares the model with the fused and logged
    orders on those searches."""
    engaged = data.engaged()
    usable, held_out = engaged.split_by_time(config.holdout)
    count = len(usable.sizes)
    if count < config.min_searches:
        raise LtrrError(
            f"only {count} logged searches with impressions and engagement"
            f"{' before the holdout' if config.holdout else ''}; at least "
            f"{config.min_searches} are needed to train a ranker (send 'impression' events for "
            "the results shown, and clicks, favourites or playbacks)"
        )
    rng = np.random.default_rng(config.seed)
    picked = rng.permutation(count)
    validation_count = min(count - 1, max(1, round(config.validation * count)))
    train = usable.take(sorted(picked[validation_count:].tolist()))
    validation = usable.take(sorted(picked[:validation_count].tolist()))
    params = config.params()
    started = time.perf_counter()
    train_set = lgb.Dataset(
        train.features,
        train.labels,
        group=train.sizes,
        position=train.positions if config.position_aware else None,
        feature_name=data.schema.names,
        free_raw_data=False,
    )
    validation_set = lgb.Dataset(
        validation.features, validation.labels, group=validation.sizes, reference=train_set
    )
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[validation_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    seconds = time.perf_counter() - started
    best = booster.best_iteration or booster.current_iteration()
    gains = booster.feature_importance("gain", iteration=best)
    importance = sorted(zip(data.schema.names, gains.tolist(), strict=True), key=lambda p: -p[1])
    model_scores = np.asarray(
        booster.predict(validation.features, num_iteration=best), dtype=np.float64
    )
    report = RankerReport(
        feature_version=data.schema.version,
        trained_at=datetime.now(UTC),
        position_bias=POSITION_AWARE if config.position_aware else "none",
        logged_searches=logged,
        searches=count,
        train_searches=len(train.sizes),
        validation_searches=validation_count,
        held_out_searches=len(held_out.sizes),
        rows=int(sum(usable.sizes)),
        trained_until=usable.timestamps[-1],
        best_iteration=best,
        training_seconds=round(seconds, 3),
        validation={
            "lambdamart": validation.quality(model_scores),
            "fused": validation.quality(validation.fused()),
            "logged": validation.quality(validation.logged_order()),
        },
        importance_gain={name: round(gain, 4) for name, gain in importance},
        params=params,
    )
    return booster, report
