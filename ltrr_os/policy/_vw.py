"""What the learned policies share: one Vowpal Wabbit `--cb_explore_adf` workspace behind a lock,
seeded sampling from its PMF, and versioned, atomic, verified persistence.

A saved version is two files, `policy-<name>-v<N>.vw` (the VW model, with its learning state)
and `policy-<name>-v<N>.json` (config, running stats, sampler state and the model's SHA-256).
The JSON is written last and is the commit: a crash mid-save leaves the previous version the
newest, and a model that does not match its checksum is never handed to VW (VW loads a
truncated model silently, as zeros)."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import tempfile
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from vowpalwabbit import Workspace

from .._durable import fsync_directory, replace_atomically
from ._features import INTERACTIONS, StrategyHistory
from ._models import Policy, StrategyChoice

log = logging.getLogger(__name__)

REMEMBERED_DECISIONS = 100_000
"""Recent decisions whose full PMF is kept for learning (a few hundred bytes each)."""
DEFAULT_POLICY_NAME = "bandit"
"""The name the service saves and loads its learned policy under."""

Exploration = Literal["epsilon", "squarecb"]


class BanditConfig(BaseModel):
    """How a learned policy explores, what a candidate costs, and its seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="also names its files")
    exploration: Exploration = "epsilon"
    epsilon: float = Field(default=0.05, gt=0, le=1, description="for epsilon exploration")
    gamma_scale: float = Field(default=10.0, gt=0, description="for squarecb: exploitation pace")
    cost_per_candidate: float = Field(default=0.002, ge=0, description="100 candidates: 0.2")
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
    """The JSON half of a saved version."""

    format: Literal[1] = 1
    kind: str
    version: int = Field(ge=1)
    config: dict[str, Any]
    history: StrategyHistory
    rng_state: list[Any]
    updates: int = Field(ge=0)
    model_file: str
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
        self._remembered: OrderedDict[bytes, array[float]] = OrderedDict()

    def _remember(self, shared: str, choices: Sequence[StrategyChoice], pmf: array[float]) -> None:
        """Keep what a decision was drawn from, which the contract does not log, for learning.
        Call with the lock held."""
        self._remembered[_key(shared, choices)] = pmf
        while len(self._remembered) > REMEMBERED_DECISIONS:
            self._remembered.popitem(last=False)

    def _recall(self, shared: str, choices: Sequence[StrategyChoice]) -> array[float] | None:
        return self._remembered.get(_key(shared, choices))

    @property
    def policy_version(self) -> str:
        """The saved version it started from and the updates learned since."""
        return f"v{self.version}+{self.updates}"

    def _cost(self, weight: float, hit: bool, candidates: int) -> float:
        """VW minimises cost: the negated reward."""
        return self.config.cost_per_candidate * candidates - (weight if hit else 0.0)

    def save(self, directory: Path) -> Path:
        """Write a new version atomically; returns the path of its JSON (the commit)."""
        with self._lock:
            directory.mkdir(parents=True, exist_ok=True)
            version, model_path = _claim_version(directory, self.name)
            descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".vw")
            os.close(descriptor)
            try:
                self._vw.save(temporary)
                _fsync(Path(temporary))
                digest = _sha256(Path(temporary))
                os.replace(temporary, model_path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                model_path.unlink(missing_ok=True)
                raise
            state = SavedState(
                kind=self.kind,
                version=version,
                config=self.config.model_dump(),
                history=self.history,
                rng_state=_jsonable(self._rng.getstate()),
                updates=self.updates,
                model_file=model_path.name,
                model_sha256=digest,
            )
            manifest = model_path.with_suffix(".json")
            replace_atomically(manifest, state.model_dump_json(indent=1).encode())
            fsync_directory(directory)
            self.version = version
            return manifest

    @classmethod
    def _restore(cls, state: SavedState, workspace: Workspace) -> VWBandit:
        policy = cls(cls.config_type.model_validate(state.config), workspace)
        policy.history = state.history
        policy.version = state.version
        policy.updates = state.updates
        policy._rng.setstate(_tupled(state.rng_state))
        return policy


def _key(shared: str, choices: Sequence[StrategyChoice]) -> bytes:
    """A decision's identity: its context features and its choices."""
    plan = ";".join(f"{c.strategy}:{c.size}:{c.probability!r}" for c in choices)
    return hashlib.blake2b(f"{shared}\n{plan}".encode(), digest_size=16).digest()


def _versions(directory: Path, name: str, suffixes: tuple[str, ...]) -> dict[int, Path]:
    """Version number -> file, for this policy's files with these suffixes."""
    pattern = re.compile(rf"policy-{re.escape(name)}-v([0-9]+)\.({'|'.join(suffixes)})")
    found = {}
    for path in directory.glob(f"policy-{name}-v*") if directory.is_dir() else []:
        if match := pattern.fullmatch(path.name):
            found[int(match.group(1))] = path
    return found


def _claim_version(directory: Path, name: str) -> tuple[int, Path]:
    """The next version number, reserved by creating its model file exclusively (two savers,
    even in two processes, never get the same number)."""
    version = max(_versions(directory, name, ("vw", "json")), default=0) + 1
    while True:
        path = directory / f"policy-{name}-v{version}.vw"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            version += 1
            continue
        return version, path


def _fsync(path: Path) -> None:
    with path.open("rb") as stream:
        os.fsync(stream.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def load_policy(directory: Path, name: str = DEFAULT_POLICY_NAME) -> VWBandit | None:
    """The newest usable saved version of a learned policy. A version that is unusable (a damaged
    file: disks and copies fail, though a crashed save never leaves one) is reported with a
    warning and the one before it tried; None when no version is usable (the caller falls back
    to a static policy). Never raises for a bad file."""
    manifests = _versions(directory, name, ("json",))
    if not manifests:
        log.info("no saved policy %r in %s", name, directory)
        return None
    for version in sorted(manifests, reverse=True):
        try:
            return _load_version(directory, name, version, manifests[version])
        except (OSError, ValueError, ValidationError, RuntimeError, TypeError) as exc:
            log.warning(
                "saved policy %r v%d in %s is unusable (%s); trying the version before it",
                name,
                version,
                directory,
                exc,
            )
    log.warning(
        "no usable version of policy %r in %s; falling back to a static policy", name, directory
    )
    return None


def _load_version(directory: Path, name: str, version: int, manifest: Path) -> VWBandit:
    state = SavedState.model_validate_json(manifest.read_bytes())
    model = directory / state.model_file
    if model.name != f"policy-{name}-v{version}.vw" or state.version != version:
        raise ValueError(f"names {state.model_file} v{state.version}, not its own model")
    if _sha256(model) != state.model_sha256:
        raise ValueError(f"{model.name} does not match its checksum (truncated or replaced)")
    kind = VWBandit._kinds.get(state.kind)
    if kind is None:
        raise ValueError(f"unknown policy kind {state.kind!r}")
    return kind._restore(state, Workspace(arg_list=["-i", str(model), "--quiet"]))
