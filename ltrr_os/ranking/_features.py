"""Ranking features of (query, candidate) pairs: one definition for serving, logging and training.

The feature schema (names and a version string) is derived from the catalog schema and the
strategy registry, so a catalog with other fields, entity types or strategies gets its own
columns, and a model trained on one schema is never fed the columns of another. The version
changes whenever the names do, and `DEFINITIONS` is bumped when a column changes meaning.

Columns, for a catalog such as music:
- per registered strategy: `<s>_score`, `<s>_rank`, `<s>_hit` (not retrieved: score 0, rank
  NOT_RETRIEVED_RANK, hit 0). `vector_score` is the vector similarity and `memory_score` the Q2E
  memory score, when those strategies retrieved the candidate;
- `strategies_hit` (how many strategies retrieved it) and `fused_score` (reciprocal rank fusion,
  each strategy weighted by what it is: `fusion_weights`);
- `popularity` (`popularity_value`) and a one-hot `type_<entity type>`;
- for the title and each name-like field (artist): `<f>_exact`, `<f>_prefix` (the query starts
  the value), `<f>_jaccard` (word overlap) and `<f>_edit_distance` (normalised Levenshtein, 1
  for an empty field);
- per slot of the best reading (entity type, artist, genre, era, mood): `slot_<s>_match`;
- `user_affinity`: the user's affinity shares summed over the candidate's 'slot=value' pairs;
- query columns, the same on every row: `query_<type>` one-hot, `query_tokens`, `query_typo`,
  and `query_slot_<s>` (the best reading fills that slot, so a 0 match means a mismatch).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rapidfuzz.distance import Levenshtein

from ..config import CatalogSchema
from ..policy import UserProfile
from ..strategies import strategies
from ..understanding import ENTITY_TYPE_SLOT, QueryType, UnderstoodQuery, tokenize
from ._fusion import RRF_K
from ._union import UnionCandidate

DEFINITIONS = "2"
"""Bumped when a column keeps its name but changes meaning: old logs and models stop matching."""
NOT_RETRIEVED_RANK = 10_000.0
"""The rank of a candidate a strategy did not retrieve: beyond any strategy's largest size."""
QUERY_TYPES: tuple[str, ...] = get_args(QueryType)
TEXT_MATCHES = ("exact", "prefix", "jaccard", "edit_distance")
SIGNIFICANT_DIGITS = 6

Matrix = npt.NDArray[np.float64]


class FeatureSchema(BaseModel):
    """The columns of a feature matrix, in order, and their version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    names: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> FeatureSchema:
        if len(set(self.names)) != len(self.names):
            raise ValueError("feature names must be unique")
        return self

    @classmethod
    def of(cls, names: Sequence[str]) -> FeatureSchema:
        digest = hashlib.sha256(json.dumps(list(names)).encode()).hexdigest()[:12]
        return cls(version=f"{DEFINITIONS}-{digest}", names=list(names))


@dataclass(frozen=True)
class FeatureMatrix:
    """One row of features per candidate of a union, in the union's order."""

    schema: FeatureSchema
    values: Matrix

    def column(self, name: str) -> Matrix:
        return self.values[:, self.schema.names.index(name)]

    def logged(self, rows: Sequence[int]) -> list[list[float]]:
        """These rows as compact lists for the search log (6 significant digits)."""
        return [
            [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in self.values[row].tolist()]
            for row in rows
        ]


def provenance_arrays(
    candidates: Sequence[UnionCandidate], strategy_names: Sequence[str]
) -> tuple[Matrix, Matrix, Matrix]:
    """Per candidate and strategy: score, rank and retrieved flag (strategies not named are
    ignored). Shared by the feature matrix and the fused ranker, so both fuse alike."""
    column = {name: j for j, name in enumerate(strategy_names)}
    rows: list[int] = []
    cols: list[int] = []
    scores: list[float] = []
    ranks: list[float] = []
    for i, candidate in enumerate(candidates):
        for p in candidate.provenance:
            j = column.get(p.strategy)
            if j is not None:
                rows.append(i)
                cols.append(j)
                scores.append(p.score)
                ranks.append(p.rank)
    shape = (len(candidates), len(strategy_names))
    score, rank, hit = np.zeros(shape), np.full(shape, NOT_RETRIEVED_RANK), np.zeros(shape)
    score[rows, cols] = scores
    rank[rows, cols] = ranks
    hit[rows, cols] = 1.0
    return score, rank, hit


FUSION_WEIGHTS: dict[str, float] = {
    "lexical": 1.0,
    "vector": 1.0,
    "memory": 1.0,
    "structured": 1.0,
    "exploration": 0.1,
    "related": 0.5,
    "personal": 1.0,
    "fresh": 0.3,
}
"""Weight of a strategy in the fused score, by its source type. Exploration samples the long
tail at random, on purpose: its hits are there to be tried, not trusted; fresh entities are
there to be tried too, and related ones were found from a hit, not from the query."""


def fused_scores(rank: Matrix, hit: Matrix, weights: Matrix) -> Matrix:
    """Weighted reciprocal rank fusion over the strategies that retrieved each candidate."""
    fused: Matrix = (hit * weights / (RRF_K + rank)).sum(axis=1)
    return fused


def popularity_values(candidates: Sequence[UnionCandidate]) -> Matrix:
    return np.fromiter(
        (float(c.source.get("popularity_value") or 0.0) for c in candidates),
        dtype=np.float64,
        count=len(candidates),
    )


@functools.lru_cache(maxsize=65_536)
def _analysed(value: str | None) -> tuple[str, frozenset[str]]:
    """A field value's words, joined and as a set, cut as query understanding cuts queries (none
    for a missing value). Cached: the same titles and names come back search after search."""
    if value is None:
        return "", frozenset()
    words = tokenize(value)
    return " ".join(words), frozenset(words)


@functools.lru_cache(maxsize=65_536)
def _text_match(query: str, value: str | None) -> tuple[float, float, float, float]:
    """How a field value matches the (normalised) query: exact, prefix, word Jaccard and
    normalised Levenshtein distance (1 for an empty value: all deletions away). Cached: the same
    query meets the same titles search after search."""
    text, words = _analysed(value)
    query_words = frozenset(query.split())
    common = len(words & query_words)
    jaccard = common / (len(words) + len(query_words) - common) if words or query_words else 0.0
    return (
        float(text == query),
        float(text.startswith(query)),
        jaccard,
        Levenshtein.normalized_distance(query, text),
    )


class FeatureExtractor:
    """Computes the feature matrix of a union for one catalog schema and strategy registry."""

    def __init__(self, catalog: CatalogSchema, strategy_names: Sequence[str] | None = None) -> None:
        self.strategy_names = list(strategies() if strategy_names is None else strategy_names)
        registry = strategies()
        self.source_types = {
            name: registry[name].source_type if name in registry else name
            for name in self.strategy_names
        }
        self.entity_types = list(catalog.entity_types)
        # Columns in name order, not in the order of the schema's dicts (which the catalog's
        # stored mapping does not keep). The title is the field so named, else the first
        # required text field; names are the name-like text fields (artist, author).
        text = dict(sorted(catalog.text_fields.items()))
        required = [name for name, spec in text.items() if spec.required]
        title = "title" if "title" in text else (required or list(text))[0]
        self.text_fields = [
            name for name, spec in text.items() if name == title or spec.analysis == "name"
        ]
        slots = dict(sorted(catalog.slots.items()))
        # Entity type and every slot of the schema, each with the field the candidate holds it in.
        self.slot_fields = {ENTITY_TYPE_SLOT: "entity_type", **slots}
        # Taste lives in attribute slots (genre, era...), as in the user profiles.
        self.affinity_fields = {
            slot: field for slot, field in slots.items() if field in catalog.keyword_fields
        }
        names = [f"{s}_{part}" for part in ("score", "rank", "hit") for s in self.strategy_names]
        names += ["strategies_hit", "fused_score", "popularity"]
        names += [f"type_{t}" for t in self.entity_types]
        names += [f"{f}_{m}" for f in self.text_fields for m in TEXT_MATCHES]
        names += [f"slot_{s}_match" for s in self.slot_fields]
        names += ["user_affinity"]
        names += [f"query_{t}" for t in QUERY_TYPES]
        names += ["query_tokens", "query_typo"]
        names += [f"query_slot_{s}" for s in self.slot_fields]
        self.schema = FeatureSchema.of(names)
        self._at = {name: j for j, name in enumerate(names)}

    def extract(
        self,
        query: UnderstoodQuery,
        candidates: Sequence[UnionCandidate],
        user: UserProfile | None = None,
    ) -> FeatureMatrix:
        """The feature matrix of the union: one row per candidate, in order."""
        n, at = len(candidates), self._at
        values = np.zeros((n, len(self.schema.names)))
        strategies_count = len(self.strategy_names)
        score, rank, hit = provenance_arrays(candidates, self.strategy_names)
        values[:, 0 : 3 * strategies_count] = np.hstack((score, rank, hit))
        values[:, at["strategies_hit"]] = hit.sum(axis=1)
        values[:, at["fused_score"]] = fused_scores(rank, hit, self.fusion_weights(query))
        values[:, at["popularity"]] = popularity_values(candidates)
        sources = [c.source for c in candidates]
        self._entity_types(values, sources)
        self._text_matches(values, query.normalized, sources)
        self._slot_matches(values, query, sources)
        if user is not None and user.affinities:
            values[:, at["user_affinity"]] = self._affinities(user.affinities, sources)
        features = query.features
        for query_type in QUERY_TYPES:
            values[:, at[f"query_{query_type}"]] = float(features.query_type == query_type)
        values[:, at["query_tokens"]] = features.length_tokens
        values[:, at["query_typo"]] = features.typo_likelihood
        return FeatureMatrix(self.schema, values)

    def fusion_weights(self, query: UnderstoodQuery) -> Matrix:
        """Each strategy's weight in the fused score for this query: its source type's, and for
        structured search the likelihood of the reading it filtered by (a query whose words only
        might name an attribute should not rank by that attribute)."""
        readings = [r.likelihood for r in query.readings[:3] if r.slots]
        confidence = max(readings, default=0.0)
        return np.asarray(
            [
                FUSION_WEIGHTS.get(self.source_types[name], 1.0)
                * (confidence if self.source_types[name] == "structured" else 1.0)
                for name in self.strategy_names
            ]
        )

    def _entity_types(self, values: Matrix, sources: Sequence[Mapping[str, Any]]) -> None:
        column = {t: self._at[f"type_{t}"] for t in self.entity_types}
        cols = np.fromiter(
            (column.get(str(s.get("entity_type")), -1) for s in sources),
            dtype=np.intp,
            count=len(sources),
        )
        known = cols >= 0
        values[known.nonzero()[0], cols[known]] = 1.0

    def _text_matches(
        self, values: Matrix, query: str, sources: Sequence[Mapping[str, Any]]
    ) -> None:
        at = self._at
        if not query or not sources:
            for field in self.text_fields:
                values[:, at[f"{field}_edit_distance"]] = 1.0
            return
        for field in self.text_fields:
            first = at[f"{field}_{TEXT_MATCHES[0]}"]
            values[:, first : first + len(TEXT_MATCHES)] = [
                _text_match(query, v if isinstance(v := s.get(field), str) else None)
                for s in sources
            ]

    def _slot_matches(
        self, values: Matrix, query: UnderstoodQuery, sources: Sequence[Mapping[str, Any]]
    ) -> None:
        wanted: dict[str, set[str]] = {}
        for slot in query.readings[0].slots if query.readings else []:
            if slot.slot in self.slot_fields:
                wanted.setdefault(slot.slot, set()).add(slot.value)
        for name, slot_values in wanted.items():
            field = self.slot_fields[name]
            values[:, self._at[f"query_slot_{name}"]] = 1.0
            # Keyword fields hold lists, text fields and the entity type plain strings.
            values[:, self._at[f"slot_{name}_match"]] = [
                not slot_values.isdisjoint(v)
                if isinstance(v := s.get(field), list)
                else v in slot_values
                for s in sources
            ]

    def _affinities(
        self, affinities: Mapping[str, float], sources: Sequence[Mapping[str, Any]]
    ) -> Matrix:
        total = np.zeros(len(sources))
        for slot, field in self.affinity_fields.items():
            prefix = f"{slot}="
            shares = {k[len(prefix) :]: v for k, v in affinities.items() if k.startswith(prefix)}
            if shares:
                total += [
                    sum(map(shares.get, v, itertools.repeat(0.0)))
                    if isinstance(v := s.get(field), list)
                    else shares.get(str(v), 0.0)
                    for s in sources
                ]
        return total
