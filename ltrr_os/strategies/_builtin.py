"""The built-in strategies. Each is a descriptor for one template in index_templates/search/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np

from ..config import CatalogSchema
from ..memory import decay_scale, namespaced
from ..understanding import Reading, UnderstoodQuery
from ._base import Seed, SourceType, Strategy, StrategyContext
from ._clauses import LEXICAL_MAX_WORDS, MAX_TEXT_WORDS, bounded_text, text_clauses

POPULARITY_BOOST = 2.0
OBSERVED_MEMORY_BOOST = 4.0
PREDICTED_MEMORY_BOOST = 1.0
EXPLORATION_MAX_POPULARITY = 0.5
STRUCTURED_SLOT_WEIGHT = 10.0
KNN_MIN_CANDIDATES = 50
KNN_MAX_CANDIDATES = 2000
FRESH_DAYS = 30
"""How long after it was added an entity counts as fresh."""
FRESH_SCALE_DAYS = 7
"""Recency decay of the fresh strategy: an entity this old scores half a new one's."""
MAX_RELATED_VALUES = 5
ATTRIBUTE_READING_LIKELIHOOD = 0.5
"""The personal strategy keeps to the attributes of a reading at least this likely."""
# Words that join slots in a query ("songs by queen") and say nothing about titles.
RESIDUAL_STOPWORDS = frozenset({"a", "an", "and", "by", "for", "from", "of", "the", "to", "with"})
# Up to three readings match their residual words, against every text field: typo tolerant only
# for short residuals, so that the query stays under OpenSearch's 1,024 clauses (see _clauses).
FUZZY_RESIDUAL_WORDS = 2


def _exact_field(schema: CatalogSchema, field: str) -> str:
    """Where a field's exact values are: a keyword field itself, a text field's `.keyword`."""
    return field if field in schema.keyword_fields else f"{field}.keyword"


def _loose_clauses(query: UnderstoodQuery, context: StrategyContext) -> list[dict[str, Any]]:
    """A loose match: the query's words in the predicted queries (which name genres, moods,
    eras) or in the text fields, without typo tolerance."""
    words = bounded_text(query.text, MAX_TEXT_WORDS)  # clauses stay under 1,024
    loose: list[dict[str, Any]] = [{"match": {"predicted_queries": {"query": words}}}]
    return loose + text_clauses(context.schema, query.text, fuzzy_words=0)


def _asked_attributes(query: UnderstoodQuery, context: StrategyContext) -> list[dict[str, Any]]:
    """The attribute values (keyword slots such as genre or era, and the entity type) of the
    query's best reading, when it is the likely one: a vague query's constraints."""
    if not query.readings or query.readings[0].likelihood < ATTRIBUTE_READING_LIKELIHOOD:
        return []
    keyword = {s: f for s, f in context.schema.slots.items() if f in context.schema.keyword_fields}
    keyword["entity_type"] = "entity_type"
    found: dict[str, list[str]] = {}
    for slot in query.readings[0].slots:
        if slot.slot in keyword:
            found.setdefault(keyword[slot.slot], []).append(slot.value)
    return [{"terms": {field: values}} for field, values in sorted(found.items())]


def _knn_k(size: int) -> int:
    """HNSW explores k candidates: twice the size (at least 50) keeps recall near exact."""
    return min(max(2 * size, KNN_MIN_CANDIDATES), KNN_MAX_CANDIDATES)


def _common(context: StrategyContext, size: int) -> dict[str, Any]:
    return {
        "size": size,
        "timeout": f"{context.timeout_ms}ms",
        "source": context.source_filter,
        "filters": context.filters,
    }


class Lexical(Strategy):
    """BM25 over the schema's text fields with their boosts, typo tolerant, biased by popularity
    so that the more popular of two equal titles wins."""

    name: ClassVar[str] = "lexical"
    source_type: ClassVar[SourceType] = "lexical"

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if not self.applicable(query, context):
            return None
        return {
            **_common(context, size),
            "text_clauses": text_clauses(context.schema, query.text, max_words=LEXICAL_MAX_WORDS),
            "popularity_boost": POPULARITY_BOOST,
        }


class Structured(Strategy):
    """Structured search driven by query understanding. Each reading with slots is one
    interpretation: all its attribute constraints must hold (each worth its confidence, whatever
    the value's rarity), the words it leaves over rank the matches by text, and the reading
    counts as much as its likelihood."""

    name: ClassVar[str] = "structured"
    source_type: ClassVar[SourceType] = "structured"

    def applicable(self, query: UnderstoodQuery, context: StrategyContext) -> bool:
        return any(reading.slots for reading in query.readings[:3])

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        readings = [
            clause for r in query.readings[:3] if (clause := self._reading(r, context)) is not None
        ]
        if not readings:
            return None
        return {
            **_common(context, size),
            "readings": readings,
            "popularity_boost": POPULARITY_BOOST,
        }

    @staticmethod
    def _reading(reading: Reading, context: StrategyContext) -> dict[str, Any] | None:
        schema = context.schema
        constraints: list[dict[str, Any]] = []
        for slot in reading.slots:
            if slot.slot == "entity_type":
                target = "entity_type"
            elif (field := schema.slots.get(slot.slot)) is not None:
                target = _exact_field(schema, field)
            else:
                continue
            constraints.append(
                {
                    "constant_score": {
                        "filter": {"term": {target: slot.value}},
                        "boost": round(STRUCTURED_SLOT_WEIGHT * slot.confidence, 4),
                    }
                }
            )
        if not constraints:
            return None
        residual = [w for w in reading.residual.split() if w not in RESIDUAL_STOPWORDS]
        clause: dict[str, Any] = {"must": constraints}
        if residual:
            clause["should"] = text_clauses(
                context.schema, " ".join(residual), fuzzy_words=FUZZY_RESIDUAL_WORDS
            )
        return {"bool": {**clause, "boost": round(max(reading.likelihood, 1e-3), 4)}}


class Vector(Strategy):
    """Dense kNN over the sentence embedding of the query (semantic, topical queries)."""

    name: ClassVar[str] = "vector"
    source_type: ClassVar[SourceType] = "vector"

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if not self.applicable(query, context):
            return None
        return {
            **_common(context, size),
            "vector": context.encoder.encode_one(query.text),
            "k": _knn_k(size),
        }


class Memory(Strategy):
    """The Q2E memory: entities users engaged with for this query (observed), and before any
    engagement the queries each entity was predicted to answer (cold start)."""

    name: ClassVar[str] = "memory"
    source_type: ClassVar[SourceType] = "memory"

    def applicable(self, query: UnderstoodQuery, context: StrategyContext) -> bool:
        return bool(query.memory_keys)

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if not self.applicable(query, context):
            return None
        # Stored scores are forward-decayed: a decayed score of 1 is `pivot` stored units now.
        pivot = decay_scale(context.now or datetime.now(UTC))
        clauses = []
        for key in query.memory_keys:
            clauses.append(
                {
                    "rank_feature": {
                        "field": f"q2e.{namespaced(key, context.memory_namespace)}",
                        "saturation": {"pivot": pivot},
                        "boost": OBSERVED_MEMORY_BOOST,
                    }
                }
            )
            clauses.append(
                {
                    "rank_feature": {
                        "field": f"q2e_prior.{key}",
                        "linear": {},
                        "boost": PREDICTED_MEMORY_BOOST,
                    }
                }
            )
        return {**_common(context, size), "memory_clauses": clauses}


class Exploration(Strategy):
    """Long-tail items that still match the query loosely, sampled uniformly at random (seeded per
    search): what the other strategies rarely surface, shown so that feedback can reach it."""

    name: ClassVar[str] = "exploration"
    source_type: ClassVar[SourceType] = "exploration"

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if not self.applicable(query, context):
            return None
        return {
            **_common(context, size),
            "loose_clauses": _loose_clauses(query, context),
            "max_popularity": EXPLORATION_MAX_POPULARITY,
            "seed": context.exploration_seed,
        }


class Personal(Strategy):
    """kNN around the user's taste (engagement-weighted, time-decayed mean of the vectors of
    what they engaged with, the last hour's engagements weighing more), blended with the query's
    vector: `taste_weight` of the taste, the rest of the query. When the query most likely names
    attributes ("rock", "80s"), the neighbours must carry them: the user's taste within what
    was asked. Nothing for a user without history: no taste, no candidates."""

    name: ClassVar[str] = "personal"
    source_type: ClassVar[SourceType] = "personal"
    taste_weight: ClassVar[float] = 0.5

    @property
    def template(self) -> str:
        return "personal.mustache"

    def applicable(self, query: UnderstoodQuery, context: StrategyContext) -> bool:
        return context.user_vector is not None and bool(query.tokens)

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if context.user_vector is None or not self.applicable(query, context):
            return None
        taste = np.asarray(context.user_vector)
        if self.taste_weight < 1.0:
            text = np.asarray(context.encoder.encode_one(query.text))
            taste = self.taste_weight * taste + (1.0 - self.taste_weight) * text
        norm = float(np.linalg.norm(taste))
        if norm == 0.0:
            return None
        asked = _asked_attributes(query, context)
        return {
            **_common(context, size),
            "vector": [round(float(v), 6) for v in taste / norm],
            "k": _knn_k(size),
            "attribute_filter": {"bool": {"filter": asked}} if asked else None,
        }


class PersonalTaste(Personal):
    """`personal` led by the taste: for vague queries, where the user's taste decides."""

    name: ClassVar[str] = "personal_taste"
    taste_weight: ClassVar[float] = 0.85


class Fresh(Strategy):
    """Entities added to the catalog in the last FRESH_DAYS that loosely match the query, the
    newest first among equal matches: so that feedback can reach new items before their
    popularity or memory would surface them."""

    name: ClassVar[str] = "fresh"
    source_type: ClassVar[SourceType] = "fresh"

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if not self.applicable(query, context):
            return None
        # To the hour: the same query within an hour asks the same thing (and caches alike).
        now = (context.now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
        return {
            **_common(context, size),
            "loose_clauses": _loose_clauses(query, context),
            "since": (now - timedelta(days=FRESH_DAYS)).isoformat(),
            "until": (now + timedelta(hours=1)).isoformat(),
            "origin": now.isoformat(),
            "scale": f"{FRESH_SCALE_DAYS}d",
        }


class Related(Strategy):
    """The entities related to the first round trip's best hits (the schema's `relations`: a
    track's artist and album, an artist's tracks and albums, an album's tracks), the more
    popular first, each named after the hit it came from (`_name`: OpenSearch returns it in
    `matched_queries`). An expansion: it runs in a second round trip with what is left of the
    search's deadline."""

    name: ClassVar[str] = "related"
    source_type: ClassVar[SourceType] = "related"
    expands: ClassVar[bool] = True

    def applicable(self, query: UnderstoodQuery, context: StrategyContext) -> bool:
        return bool(query.tokens) and bool(context.schema.relations)

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if not self.applicable(query, context):
            return None
        clauses = [
            clause for seed in context.seeds for clause in related_clauses(context.schema, seed)
        ]
        if not clauses:
            return None
        return {
            **_common(context, size),
            "related_clauses": clauses,
            "seed_ids": [seed.id for seed in context.seeds],
            "popularity_boost": POPULARITY_BOOST,
        }


def related_clauses(schema: CatalogSchema, seed: Seed) -> list[dict[str, Any]]:
    """One clause per relation that applies to the seed: the entities whose fields hold the
    seed's values, worth the seed's weight, named after the seed."""
    found = []
    for relation in schema.relations:
        if seed.source.get("entity_type") not in relation.from_types:
            continue
        conditions: list[dict[str, Any]] = [{"terms": {"entity_type": relation.to_types}}]
        for mine, theirs in relation.fields.items():
            values = seed.source.get(mine)
            values = [v for v in (values if isinstance(values, list) else [values]) if v]
            if not values:
                break
            exact = _exact_field(schema, theirs)
            conditions.append({"terms": {exact: [str(v) for v in values][:MAX_RELATED_VALUES]}})
        else:
            found.append(
                {
                    "constant_score": {
                        "filter": {"bool": {"filter": conditions}},
                        "boost": round(seed.weight, 4),
                        "_name": seed.id,
                    }
                }
            )
    return found
