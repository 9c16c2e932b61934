"""The learned ranker: a LightGBM LambdaMART model over the union's feature matrix, and its
serialisation as one blob for the model index: a JSON line with the feature schema it reads and
its training report, then LightGBM's model text. A blob whose features are not the live
catalog's is refused (the model index checks the bytes' checksum), and the previous version or
the fused ranker keeps ranking."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel, Field, ValidationError

from .._errors import LtrrError
from ._features import FeatureExtractor, FeatureMatrix, FeatureSchema, Matrix
from ._rankers import Ranker


class RankerReport(BaseModel):
    """What a training run did and how well its model ranks its validation searches."""

    version: int = Field(default=0, ge=0, description="set when saved")
    feature_version: str
    trained_at: datetime
    position_bias: str = Field(description="how position bias in the clicks was handled")
    logged_searches: int = Field(description="searches in the log, whatever their state")
    searches: int = Field(description="searches with impressions and engagement, used")
    train_searches: int
    validation_searches: int
    held_out_searches: int = Field(description="the newest, left out for evaluate --logged")
    rows: int = Field(description="shown results of the searches used")
    trained_until: datetime = Field(description="time of the newest search trained on")
    best_iteration: int
    training_seconds: float
    validation: dict[str, dict[str, float]] = Field(
        description="ranker -> nDCG@10 and MRR on the validation searches: the model, the fused "
        "ranking and the order the searches were logged in"
    )
    importance_gain: dict[str, float]
    params: dict[str, Any]
    model_sha256: str = ""


class LambdaMARTRanker(Ranker):
    """A saved LambdaMART model scoring the union's feature matrix."""

    def __init__(
        self, booster: lgb.Booster, extractor: FeatureExtractor, report: RankerReport
    ) -> None:
        self._booster = booster
        self.extractor = extractor
        self.report = report
        self.version = report.version
        self.name = f"lambdamart-v{report.version}"

    def score_features(self, features: FeatureMatrix) -> Matrix:
        if features.schema != self.extractor.schema:
            raise LtrrError(
                f"{self.name} ranks features {self.extractor.schema.version}, "
                f"not {features.schema.version}"
            )
        # One thread: a few hundred rows are scored faster than threads start.
        return np.asarray(self._booster.predict(features.values, num_threads=1), dtype=np.float64)


class _Header(BaseModel):
    """The first line of a ranker blob."""

    features: FeatureSchema
    report: RankerReport


def ranker_to_bytes(booster: lgb.Booster, schema: FeatureSchema, report: RankerReport) -> bytes:
    """A ranker as one blob for the model index: its feature schema and report on one line,
    then LightGBM's model text (the best iteration only)."""
    header = _Header(features=schema, report=report).model_dump_json().encode()
    return header + b"\n" + booster.model_to_string(num_iteration=report.best_iteration).encode()


def ranker_from_bytes(
    blob: bytes, extractor: FeatureExtractor, version: int | None = None
) -> LambdaMARTRanker:
    """A ranker from `ranker_to_bytes`; ValueError when it is damaged or reads features other
    than this catalog's."""
    line, newline, model = blob.partition(b"\n")
    if not newline:
        raise ValueError("not a ranker blob: no header line")
    try:
        header = _Header.model_validate_json(line)
    except ValidationError as exc:
        raise ValueError(f"not a ranker blob: {exc.error_count()} problems in its header") from None
    if header.features != extractor.schema:
        raise ValueError(
            f"it was trained on features {header.features.version}, the catalog now has "
            f"{extractor.schema.version}; train a new one"
        )
    try:
        booster = lgb.Booster(model_str=model.decode())
    except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
        raise ValueError(f"LightGBM cannot read the model: {exc}") from None
    if booster.feature_name() != header.features.names:
        raise ValueError("the model's features are not those of its header")
    report = header.report
    if version is not None:
        report = report.model_copy(update={"version": version})
    return LambdaMARTRanker(booster, extractor, report)
