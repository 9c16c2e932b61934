"""The lexicon: what query understanding knows about a catalog, derived from its entities and
schema so that any catalog (music, documents...) gets slot tagging without hand-made lists."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ..config import CatalogSchema
from ._tokens import tokenize

MIN_PRIOR = 0.001
"""The prior of a name whose entities have no popularity: small, but a name is still a name."""

Prior = Annotated[float, Field(gt=0, le=1)]


class Lexicon(BaseModel):
    """What query understanding knows about the catalog, built from its entities.

    Frozen because understand() compiles an index from it once and reuses it."""

    model_config = ConfigDict(frozen=True)

    slot_values: dict[str, dict[str, Prior]] = Field(
        description="slot -> {canonical value: prior in (0, 1]}"
    )
    entity_types: list[str]
    vocabulary: dict[str, Annotated[int, Field(ge=1)]] = Field(
        description="word -> number of entities whose text fields contain it"
    )
    name_slots: list[str] = Field(
        default_factory=list,
        description="slots filled from text fields (names such as artist or author): a reading "
        "names at most one of each, and naming one points to a known-item query",
    )


def _values(entity: Mapping[str, Any], field: str) -> list[str]:
    value = entity.get(field)
    items = value if isinstance(value, list | tuple) else [value]
    return [str(v) for v in items if v is not None and str(v).strip()]


def _popularity(entity: Mapping[str, Any]) -> float:
    try:
        value = float(entity.get("popularity") or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0


def build_lexicon(entities: Iterable[Mapping[str, Any]], schema: CatalogSchema) -> Lexicon:
    """Slot values with priors and the word counts of the catalog's text.

    The prior of a keyword value (genre, era) is the share of entities carrying it; the prior of
    a name (a text-field slot such as artist) is the highest popularity among the entities that
    name it, since a name is asked for as often as its best-known work."""
    slots = schema.slots
    text_fields = schema.text_fields
    name_slots = [slot for slot, field in slots.items() if field in text_fields]
    shares: dict[str, Counter[str]] = {slot: Counter() for slot in slots if slot not in name_slots}
    popularity: dict[str, dict[str, float]] = {slot: {} for slot in name_slots}
    vocabulary: Counter[str] = Counter()
    total = 0
    for entity in entities:
        total += 1
        for slot, field in slots.items():
            values = set(_values(entity, field))
            if slot in popularity:
                best = popularity[slot]
                score = _popularity(entity)
                for value in values:
                    best[value] = max(best.get(value, 0.0), score)
            else:
                shares[slot].update(values)
        words: set[str] = set()
        for field in text_fields:
            for value in _values(entity, field):
                words.update(tokenize(value))
        vocabulary.update(words)

    slot_values: dict[str, dict[str, float]] = {}
    for slot in slots:
        if slot in popularity:
            priors = {v: max(p, MIN_PRIOR) for v, p in popularity[slot].items()}
        else:
            priors = {v: n / total for v, n in shares[slot].items()}
        slot_values[slot] = dict(sorted(priors.items()))
    return Lexicon(
        slot_values=slot_values,
        entity_types=list(schema.entity_types),
        vocabulary=dict(sorted(vocabulary.items())),
        name_slots=name_slots,
    )
