"""The built-in strategies. Each is a descriptor for one template in index_templates/search/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from ..memory import decay_scale, namespaced
from ..understanding import Reading, UnderstoodQuery
from ._base import SourceType, Strategy, StrategyContext
from ._clauses import LEXICAL_MAX_WORDS, MAX_TEXT_WORDS, bounded_text, text_clauses

POPULARITY_BOOST = 2.0
OBSERVED_MEMORY_BOOST = 4.0
PREDICTED_MEMORY_BOOST = 1.0
EXPLORATION_MAX_POPULARITY = 0.5
STRUCTURED_SLOT_WEIGHT = 10.0
KNN_MIN_CANDIDATES = 50
KNN_MAX_CANDIDATES = 2000
# Words that join slots in a query ("songs by queen") and say nothing about titles.
RESIDUAL_STOPWORDS = frozenset({"a", "an", "and", "by", "for", "from", "of", "the", "to", "with"})
# Up to three readings match their residual words, against every text field: typo tolerant only
# for short residuals, so that the query stays under OpenSearch's 1,024 clauses (see _clauses).
FUZZY_RESIDUAL_WORDS = 2


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
        if not self.applicable(query):
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

    def applicable(self, query: UnderstoodQuery) -> bool:
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
                target = field if field in schema.keyword_fields else f"{field}.keyword"
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
        if not self.applicable(query):
            return None
        return {
            **_common(context, size),
            "vector": context.encoder.encode_one(query.text),
            # HNSW explores k candidates: twice the size (at least 50) keeps recall near exact.
            "k": min(max(2 * size, KNN_MIN_CANDIDATES), KNN_MAX_CANDIDATES),
        }


class Memory(Strategy):
    """The Q2E memory: entities users engaged with for this query (observed), and before any
    engagement the queries each entity was predicted to answer (cold start)."""

    name: ClassVar[str] = "memory"
    source_type: ClassVar[SourceType] = "memory"

    def applicable(self, query: UnderstoodQuery) -> bool:
        return bool(query.memory_keys)

    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        if not self.applicable(query):
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
        if not self.applicable(query):
            return None
        words = bounded_text(query.text, MAX_TEXT_WORDS)  # clauses stay under 1,024
        loose = [{"match": {"predicted_queries": {"query": words}}}]
        loose += text_clauses(context.schema, query.text, fuzzy_words=0)
        return {
            **_common(context, size),
            "loose_clauses": loose,
            "max_popularity": EXPLORATION_MAX_POPULARITY,
            "seed": context.exploration_seed,
        }
