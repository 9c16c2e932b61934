"""What the learned policies share: one Vowpal Wabbit `--cb_explore_adf` workspace behind a lock,
seeded sampling from its PMF, and verified serialisation.

A policy travels as one blob (`to_bytes`): its state as a JSON line (config, running stats,
sampler state and the model's SHA-256), then VW's model with its learning state. The model
index stores the blob as a version; a model that does not match its checksum is never handed to
VW (VW loads a truncated model silently, as zeros)."""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from vowpalwabbit import Workspace

from ..config import DEFAULT_COST_PER_CANDIDATE
from ._features import INTERACTIONS, StrategyHistory
from ._models import Policy

log = logging.getLogger(__name__)

DEFAULT_POLICY_NAME = "bandit"
"""The name the learner publishes its policy under, and servers load."""

Exploration = Literal["epsilon", "squarecb"]


class BanditConfig(BaseModel):
    """How a learned policy explores, what a candidate costs, and its seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="also names its files")
    exploration: Exploration = "epsilon"
    epsilon: float = Field(default=0.05, gt=0, le=1, description="for epsilon exploration")
    gamma_scale: float = Field(default=10.0, gt=0, description="for squarecb: exploitation pace")
    cost_per_candidate: float = Field(
        default=DEFAULT_COST_PER_CANDIDATE, ge=0, description="100 candidates: 0.2"
    )
    learning_rate: float = Field(default=0.5, gt=0)
    bits: int = Field(default=20, ge=12, le=28, description="VW feature hash bits")
    seed: int = 0

    def vw_arguments(self) -> str:
        explore = (
            f"--epsilon {self.epsilon}"
            if self.exploration == "epsilon"
            else f"--squarecb --gamma_scale {self.gamma_scale}"
        )
        pairs = " ".join(f"-q {pair}" for pair in INTERACTIONS)
        return (
            f"--cb_explore_adf {explore} {pairs} -b {self.bits} -l {self.learning_rate} "
            f"--random_seed {self.seed} --quiet"
        )


class SavedState(BaseModel):
    """The JSON line of a policy blob."""

    format: Literal[2] = 2
    kind: str
    version: int = Field(ge=0)
    config: dict[str, Any]
    history: StrategyHistory
    rng_state: list[Any]
    updates: int = Field(ge=0)
    model_sha256: str


def sample(pmf: Sequence[float], rng: random.Random) -> int:
    """An index drawn from the PMF; never one of probability 0, even when rounding leaves the
    PMF summing to a little less than 1."""
    draw = rng.random() * sum(pmf)
    cumulative = 0.0
    for index, probability in enumerate(pmf):
        cumulative += probability
        if draw < cumulative and probability > 0:
            return index
    return max(i for i, p in enumerate(pmf) if p > 0)


def argmax(pmf: Sequence[float]) -> int:
    """The policy's best guess (first on ties): the action explore-exploit weighs most."""
    return max(range(len(pmf)), key=lambda i: (pmf[i], -i))


class VWBandit(Policy):
    """A contextual bandit over one VW workspace; subclasses define the actions.

    The workspace is not thread-safe, so decide, learn and save hold one lock."""

    kind: ClassVar[str]
    config_type: ClassVar[type[BanditConfig]] = BanditConfig
    _kinds: ClassVar[dict[str, type[VWBandit]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        VWBandit._kinds[cls.kind] = cls

    def __init__(self, config: BanditConfig, workspace: Workspace | None = None) -> None:
        self.config = config
        self.name = config.name
        self.history = StrategyHistory()
        self.version = 0
        self.updates = 0
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._vw = workspace or Workspace(self.config.vw_arguments())

    @property
    def policy_version(self) -> str:
        """The saved version it started from and the updates learned since."""
        return f"v{self.version}+{self.updates}"

    def _cost(self, weight: float, hit: bool, candidates: int) -> float:
        """VW minimises cost: the negated reward."""
        return self.config.cost_per_candidate * candidates - (weight if hit else 0.0)

    def to_bytes(self) -> bytes:
        """The policy as one blob: its JSON state, a line break, then VW's model (with its
        learning state, so learning continues exactly where it stopped)."""
        with self._lock, tempfile.TemporaryDirectory(prefix="ltrr-policy-") as directory:
            path = Path(directory) / "model.vw"
            self._vw.save(str(path))
            model = path.read_bytes()
            state = SavedState(
                kind=self.kind,
                version=self.version,
                config=self.config.model_dump(),
                history=self.history,
                rng_state=_jsonable(self._rng.getstate()),
                updates=self.updates,
                model_sha256=hashlib.sha256(model).hexdigest(),
            )
        return state.model_dump_json().encode() + b"\n" + model

    @classmethod
    def _restore(cls, state: SavedState, workspace: Workspace) -> VWBandit:
        policy = cls(cls.config_type.model_validate(state.config), workspace)
        policy.history = state.history
        policy.version = state.version
        policy.updates = state.updates
        policy._rng.setstate(_tupled(state.rng_state))
        return policy


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def policy_from_bytes(blob: bytes) -> VWBandit:
    """A policy from `VWBandit.to_bytes`; ValueError when the blob is damaged (VW itself would
    load a truncated model silently, as zeros, so the checksum is checked first)."""
    header, newline, model = blob.partition(b"\n")
    if not newline:
        raise ValueError("not a policy blob: no state line")
    try:
        state = SavedState.model_validate_json(header)
    except ValidationError as exc:
        raise ValueError(f"not a policy blob: {exc.error_count()} problems in its state") from None
    if hashlib.sha256(model).hexdigest() != state.model_sha256:
        raise ValueError("the policy's model does not match its checksum (truncated or replaced)")
    kind = VWBandit._kinds.get(state.kind)
    if kind is None:
        raise ValueError(f"unknown policy kind {state.kind!r}")
    try:
        config = kind.config_type.model_validate(state.config)
    except ValidationError as exc:
        raise ValueError(f"its config is invalid: {exc.error_count()} problems") from None
    with tempfile.TemporaryDirectory(prefix="ltrr-policy-") as directory:
        path = Path(directory) / "model.vw"
        path.write_bytes(model)
        try:
            workspace = Workspace(arg_list=["-i", str(path), "--quiet"])
        except RuntimeError as exc:
            raise ValueError(f"Vowpal Wabbit cannot read the model: {exc}") from None
    try:
        return kind._restore(state.model_copy(update={"config": config.model_dump()}), workspace)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"its state is invalid: {exc}") from None
