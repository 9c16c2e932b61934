"""The learned ranker: versioned LightGBM LambdaMART models on disk, loading, and hot reload.

A version is a directory `<model_dir>/ranker/v<N>/` holding `model.txt` (LightGBM), its
`features.json` (the feature schema it was trained on) and `metrics.json` (the training report,
with the model's SHA-256). It is written in a temporary directory and renamed into place, so a
reader sees a whole version or none; a model that does not match its checksum or the live
feature schema is refused, and the fused ranker keeps ranking."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel, Field, ValidationError

from .._durable import fsync_directory, write_durably
from .._errors import LtrrError
from ..policy import DecisionContext
from ..understanding import UnderstoodQuery
from ._features import FeatureExtractor, FeatureMatrix, FeatureSchema, Matrix
from ._rankers import Ranker
from ._union import UnionCandidate

log = logging.getLogger(__name__)

RANKER_DIR = "ranker"
MODEL_FILE = "model.txt"
FEATURES_FILE = "features.json"
METRICS_FILE = "metrics.json"
_VERSION = re.compile(r"v([0-9]+)")


class RankerReport(BaseModel):
    """What a training run did and how well its model ranks held-out searches (metrics.json)."""

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


def ranker_root(model_dir: Path) -> Path:
    return model_dir / RANKER_DIR


def ranker_versions(model_dir: Path) -> dict[int, Path]:
    """Version number -> directory, for the complete versions (temporary ones start with '.')."""
    root = ranker_root(model_dir)
    if not root.is_dir():
        return {}
    return {
        int(match.group(1)): path
        for path in root.iterdir()
        if (match := _VERSION.fullmatch(path.name)) and path.is_dir()
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_ranker(
    model_dir: Path, booster: lgb.Booster, schema: FeatureSchema, report: RankerReport
) -> tuple[Path, RankerReport]:
    """Write a new version atomically; returns its directory and the report as saved."""
    root = ranker_root(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        model = temporary / MODEL_FILE
        write_durably(model, booster.model_to_string(num_iteration=report.best_iteration).encode())
        write_durably(temporary / FEATURES_FILE, schema.model_dump_json(indent=1).encode())
        version = max(ranker_versions(model_dir), default=0) + 1
        while True:
            saved = report.model_copy(update={"version": version, "model_sha256": _sha256(model)})
            write_durably(temporary / METRICS_FILE, saved.model_dump_json(indent=1).encode())
            target = root / f"v{version}"
            try:
                # Renaming onto a non-empty directory fails: another trainer claimed the number.
                os.rename(temporary, target)
            except OSError:
                if not target.exists():
                    raise
                version += 1
                continue
            fsync_directory(root)
            return target, saved
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


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

    def score(
        self, query: UnderstoodQuery, candidates: Sequence[UnionCandidate], context: Any = None
    ) -> list[float]:
        user = context.user if isinstance(context, DecisionContext) else None
        scores: list[float] = self.score_features(
            self.extractor.extract(query, candidates, user)
        ).tolist()
        return scores


def load_ranker(model_dir: Path, extractor: FeatureExtractor) -> LambdaMARTRanker | None:
    """The newest saved version, or None with a warning when it is unusable (corrupt, or trained
    on other features than this catalog's): the caller keeps its current ranker."""
    versions = ranker_versions(model_dir)
    if not versions:
        log.info("no saved ranker in %s", ranker_root(model_dir))
        return None
    version = max(versions)
    directory = versions[version]
    try:
        schema = FeatureSchema.model_validate_json((directory / FEATURES_FILE).read_bytes())
        if schema != extractor.schema:
            raise ValueError(
                f"it was trained on features {schema.version}, the catalog now has "
                f"{extractor.schema.version}; train a new one"
            )
        report = RankerReport.model_validate_json((directory / METRICS_FILE).read_bytes())
        model = directory / MODEL_FILE
        if report.version != version or _sha256(model) != report.model_sha256:
            raise ValueError(f"{model} does not match its metrics.json (truncated or replaced)")
        booster = lgb.Booster(model_file=str(model))
        if booster.feature_name() != schema.names:
            raise ValueError("the model's features are not those of its features.json")
    except (OSError, ValueError, ValidationError, lgb.basic.LightGBMError) as exc:
        log.warning("saved ranker v%d in %s is unusable (%s)", version, directory, exc)
        return None
    return LambdaMARTRanker(booster, extractor, report)


class RankerWatch:
    """Finds a newer saved ranker, looking at most every `interval_s` seconds and then with one
    stat() of the ranker directory (renaming a version into it changes its mtime)."""

    def __init__(self, model_dir: Path, extractor: FeatureExtractor, interval_s: float) -> None:
        self._model_dir = model_dir
        self._extractor = extractor
        self._interval_s = interval_s
        self._next = 0.0
        self._stamp: int | None = None
        self._lock = threading.Lock()

    def newer(self, version: int | None) -> LambdaMARTRanker | None:
        """A loaded version newer than `version` (None: no learned ranker yet), if one appeared
        since the last look. Never blocks: a look under way in another thread answers None."""
        now = time.monotonic()
        if now < self._next or not self._lock.acquire(blocking=False):
            return None
        try:
            self._next = now + self._interval_s
            try:
                stamp: int | None = ranker_root(self._model_dir).stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp is None or stamp == self._stamp:
                return None
            self._stamp = stamp
            newest = max(ranker_versions(self._model_dir), default=0)
            if newest <= (version or 0):
                return None
            return load_ranker(self._model_dir, self._extractor)
        finally:
            self._lock.release()
