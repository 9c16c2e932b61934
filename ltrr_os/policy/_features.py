"""Vowpal Wabbit features of a retrieval decision, shared by the learned policies.

Context namespaces (one shared line per decision): q = the query's features, r = its likeliest
reading, u = the user's affinities, t = the time. Action namespaces: a = the strategy, its source
and size (alone and combined, so that `-q` with each context namespace learns size effects per
query type and strategy), h = the policy's running record of the strategy for this query type.

Everything that comes from outside (slot names, languages, affinity keys...) goes through
`token`, so no input can break VW's text format."""

from __future__ import annotations

import functools
import math
import re

from pydantic import BaseModel, Field

from ._models import DecisionContext

CONTEXT_NAMESPACES = "qrut"
INTERACTIONS = tuple(f"{c}a" for c in CONTEXT_NAMESPACES)
"""Context x action: what a strategy at a size is worth depends on the query, user and time."""

MAX_TOKEN_CHARS = 48
TOP_AFFINITIES = 5
_UNSAFE = re.compile(r"[^\w.=@+-]")
"""Anything but letters, digits and a few inert marks: no '|', ':', whitespace or line breaks."""


def token(text: str) -> str:
    """A feature name VW reads as one name, whatever the text ('_' for what is unsafe)."""
    return _UNSAFE.sub("_", text[:MAX_TOKEN_CHARS]) or "_"


def _valued(name: str, value: float) -> str | None:
    """A numeric feature, or None for a value VW would drop or cannot read (0, nan, inf)."""
    if not math.isfinite(value) or abs(value) < 1e-4:
        return None
    return f"{token(name)}:{max(-1e6, min(1e6, value)):.4f}"


Buckets = tuple[tuple[float, ...], tuple[str, ...]]
"""Upper edges, and one more name than edges: a value below edges[i] is names[i]."""
_LENGTH: Buckets = ((1, 2, 3, 4, 6, 10), ("0", "1", "2", "3", "4-5", "6-9", "10+"))
_TYPO: Buckets = ((1e-9, 0.2, 0.5), ("none", "low", "mid", "high"))
_COUNT: Buckets = ((1, 2, 3), ("0", "1", "2", "3+"))
_LIKELIHOOD: Buckets = ((0.3, 0.6, 0.9), ("low", "mid", "high", "sure"))
_ENGAGEMENTS: Buckets = ((1, 10, 100), ("0", "1-9", "10-99", "100+"))
_HIT_RATE: Buckets = ((0.05, 0.2, 0.4, 0.6, 0.8), ("0", "5", "20", "40", "60", "80"))
_RESULTS: Buckets = ((1, 10, 30, 100), ("0", "1", "10", "30", "100"))
_PLAN_SIZE: Buckets = ((31, 61, 101, 201, 301), ("30", "60", "100", "200", "300", "300+"))


def _bucket(value: float, buckets: Buckets) -> str:
    edges, names = buckets
    return next(
        (name for edge, name in zip(edges, names[:-1], strict=True) if value < edge), names[-1]
    )


def _query(context: DecisionContext) -> list[str | None]:
    features = context.query.features
    scores = sorted(features.query_type_scores.items())
    return [
        f"type={token(features.query_type)}",
        *(_valued(f"score_{kind}", score) for kind, score in scores),
        f"lang={token(features.language)}",
        f"script={token(features.script)}",
        f"len={_bucket(features.length_tokens, _LENGTH)}",
        "numerals" if features.has_numerals else None,
        "year" if features.has_year else None,
        f"typo={_bucket(features.typo_likelihood, _TYPO)}",
    ]


def _reading(context: DecisionContext) -> list[str | None]:
    readings = context.query.readings
    top = readings[0] if readings else None
    slots = top.slots if top else []
    return [
        *(f"slot={token(name)}" for name in dict.fromkeys(slot.slot for slot in slots)),
        *(f"etype={token(slot.value)}" for slot in slots if slot.slot == "entity_type"),
        f"slots={_bucket(len(slots), _COUNT)}",
        f"likely={_bucket(top.likelihood if top else 0.0, _LIKELIHOOD)}",
        "fuzzy" if any(slot.fuzzy for slot in slots) else None,
        "residual" if top and top.residual.strip() else None,
        f"readings={_bucket(len(readings), _COUNT)}",
        f"keys={_bucket(len(context.query.memory_keys), _COUNT)}",
    ]


def _user(context: DecisionContext) -> list[str | None]:
    user = context.user
    usable = [(k, w) for k, w in user.affinities.items() if _valued(k, w)]
    ranked = sorted(usable, key=lambda kv: (-kv[1], kv[0]))[:TOP_AFFINITIES]
    return [
        *(_valued(f"aff={key}", weight) for key, weight in ranked),
        f"eng={_bucket(user.engagements, _ENGAGEMENTS)}",
    ]


def _time(context: DecisionContext) -> list[str | None]:
    time = context.time
    return [
        f"dow={time.day_of_week}",
        "weekend" if time.weekend else None,
        f"hour={token(time.hour_bucket)}",
        "holiday" if time.holiday_season else None,
    ]


def context_features(context: DecisionContext) -> str:
    """The shared namespaces of a decision (without the 'shared' label)."""
    parts = (_query(context), _reading(context), _user(context), _time(context))
    return " ".join(
        f"|{name} " + " ".join(f for f in features if f)
        for name, features in zip(CONTEXT_NAMESPACES, parts, strict=True)
    )


NEW_RECORD = ("new", "new")
"""The history buckets of a strategy with too few runs to judge."""


class StrategyRecord(BaseModel):
    """Exponentially decayed counts of one strategy's runs for one query type."""

    runs: float = 0.0
    hits: float = 0.0
    candidates: float = 0.0


class StrategyHistory(BaseModel):
    """How each strategy has done per query type lately: the 'historical query-strategy
    performance and number of results' action features. Decay forgets old behaviour, since the
    catalog and the memory change."""

    decay: float = Field(default=0.999, gt=0, le=1)
    min_runs: float = Field(default=5.0, description="fewer runs than this read as 'new'")
    records: dict[str, StrategyRecord] = Field(default_factory=dict)

    def record(self, query_type: str, strategy: str, hit: bool, candidates: int) -> None:
        entry = self.records.setdefault(f"{query_type}/{strategy}", StrategyRecord())
        entry.runs = entry.runs * self.decay + 1
        entry.hits = entry.hits * self.decay + hit
        entry.candidates = entry.candidates * self.decay + candidates

    def buckets(self, query_type: str, strategy: str) -> tuple[str, str]:
        """(hit rate bucket, mean result count bucket)."""
        entry = self.records.get(f"{query_type}/{strategy}")
        if entry is None or entry.runs < self.min_runs:
            return NEW_RECORD
        rate = entry.hits / entry.runs
        results = entry.candidates / entry.runs
        return _bucket(rate, _HIT_RATE), _bucket(results, _RESULTS)


@functools.lru_cache(maxsize=65536)
def strategy_action(strategy: str, source_type: str, size: int, record: tuple[str, str]) -> str:
    """One size of one strategy, as an action of the per-strategy bandit; `record` is the
    strategy's StrategyHistory buckets."""
    name, source = token(strategy), token(source_type)
    hits, results = record
    return (
        f"|a strategy={name} source={source} size={size} {name}@{size} src_{source}@{size} "
        f"|h hit_{hits}@{size} results_{results}@{size}"
    )


@functools.lru_cache(maxsize=65536)
def plan_action(plan: tuple[tuple[str, str, int, tuple[str, str]], ...]) -> str:
    """A whole plan as an action of the plan bandit: (strategy, source type, size, its
    StrategyHistory buckets) for each strategy drawn from."""
    parts: list[str] = []
    record: list[str] = []
    for strategy, source_type, size, (hits, results) in plan:
        name, source = token(strategy), token(source_type)
        parts += [f"{name}@{size}", f"src_{source}@{size}", f"run={name}"]
        record += [f"{name}_hit_{hits}@{size}", f"{name}_results_{results}@{size}"]
    spent = _bucket(sum(size for _, _, size, _ in plan), _PLAN_SIZE)
    return f"|a {' '.join(parts)} n={len(plan)} total={spent} |h {' '.join(record)}"
