"""From a raw row to the document OpenSearch stores, by the rules of the catalog schema."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .._text import memory_key
from ..config import CatalogSchema, KeywordField, NumberField, TextField

MAX_ID_BYTES = 512
MAX_SOURCES = 20
KEYWORD_SEPARATOR = "|"


class RowError(ValueError):
    """The row cannot become an entity; the message says why."""


def _text(name: str, spec: TextField, value: Any) -> str | None:
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    if not isinstance(value, str | int | float):
        raise RowError(f"field {name!r} must be text, got {type(value).__name__}")
    text = " ".join(str(value).split())
    if len(text) > spec.max_chars:
        raise RowError(f"field {name!r} is {len(text)} characters long (limit {spec.max_chars})")
    return text or None


def _keywords(name: str, spec: KeywordField, value: Any) -> list[str] | None:
    if isinstance(value, str):
        items: list[Any] = value.split(KEYWORD_SEPARATOR)
    elif isinstance(value, list):
        items = value
    elif isinstance(value, bool | int | float):
        items = [str(value).lower()]
    else:
        raise RowError(f"field {name!r} must be a string or a list, got {type(value).__name__}")
    values: list[str] = []
    for item in items:
        if not isinstance(item, str | int | float) or (
            isinstance(item, float) and math.isnan(item)
        ):
            raise RowError(f"field {name!r} has a value that is not text: {item!r}")
        text = " ".join(str(item).split())
        if len(text) > spec.max_chars:
            raise RowError(f"a value of {name!r} is longer than {spec.max_chars} characters")
        if text and text not in values:
            values.append(text)
    if len(values) > spec.max_values:
        raise RowError(f"field {name!r} has {len(values)} values (limit {spec.max_values})")
    return values or None


def _number(name: str, spec: NumberField, value: Any) -> int | float | None:
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    if isinstance(value, bool):
        raise RowError(f"field {name!r} must be a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(f"field {name!r} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise RowError(f"field {name!r} is not a finite number: {value!r}")
    if spec.type == "integer":
        if not number.is_integer() or abs(number) > 2**31 - 1:
            raise RowError(f"field {name!r} is not a 32-bit integer: {value!r}")
        return int(number)
    return number


def _popularity(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        popularity = float(value)
    except (TypeError, ValueError):
        raise RowError(f"popularity is not a number: {value!r}") from None
    if not math.isfinite(popularity) or not 0.0 <= popularity <= 1.0:
        raise RowError(f"popularity must be between 0 and 1, got {value!r}")
    return popularity


def _embedding(value: Any, dimension: int) -> list[float]:
    if not isinstance(value, list) or len(value) != dimension:
        raise RowError(f"embedding must be a list of {dimension} numbers")
    if not {type(item) for item in value} <= {int, float}:  # a bool or a numeric string is not
        raise RowError("embedding contains a value that is not a finite number")
    return _checked(np.asarray(value, dtype=np.float64))


def _checked(vector: npt.NDArray[np.float64]) -> list[float]:
    """The vector as the document's list, if cosine similarity is defined for it (validated in
    numpy: a million-entity ingest checks hundreds of millions of components)."""
    if not np.isfinite(vector).all():
        raise RowError("embedding contains a value that is not a finite number")
    if not np.any(vector):
        raise RowError("embedding is the zero vector (cosine similarity is undefined)")
    values: list[float] = vector.tolist()
    return values


VECTOR_KEYS = ("embedding", "embedding_int8", "embedding_scale")
"""How a row may bring its vector: floats, or int8 with a scale."""


def _quantised_embedding(encoded: Any, scale: Any, dimension: int) -> list[float]:
    """`embedding_int8` (base64 of `dimension` signed bytes) times `embedding_scale`: a vector in
    a sixth of the JSON of its floats (the shipped sample and scripts/make_catalog.py write it)."""
    if not isinstance(encoded, str):
        raise RowError("embedding_int8 must be base64 text")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RowError("embedding_int8 is not valid base64") from None
    if len(raw) != dimension:
        raise RowError(f"embedding_int8 must hold {dimension} bytes, not {len(raw)}")
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or scale <= 0
    ):
        raise RowError("embedding_scale must be a positive finite number")
    return _checked(np.frombuffer(raw, np.int8).astype(np.float64) * float(scale))


def prepare_entity(schema: CatalogSchema, values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """The stored document for a row (without its embedding unless the row brought one).

    Unknown keys are ignored; the caller reports them once. Raises RowError."""
    raw_id = values.get("id")
    if raw_id is None or not str(raw_id).strip():
        raise RowError("missing id")
    entity_id = str(raw_id).strip()
    if len(entity_id.encode()) > MAX_ID_BYTES or any(ord(c) < 32 for c in entity_id):
        raise RowError("id must be at most 512 bytes without control characters")
    entity_type = values.get("entity_type") or (
        schema.entity_types[0] if len(schema.entity_types) == 1 else None
    )
    if entity_type not in schema.entity_types:
        raise RowError(
            f"entity_type must be one of {', '.join(schema.entity_types)}, got {entity_type!r}"
        )
    doc: dict[str, Any] = {"id": entity_id, "entity_type": entity_type}
    for name, spec in schema.fields.items():
        value = values.get(name)
        converted: Any = None
        if value is not None and value != "":
            if isinstance(spec, TextField):
                converted = _text(name, spec, value)
            elif isinstance(spec, KeywordField):
                converted = _keywords(name, spec, value)
            else:
                converted = _number(name, spec, value)
        if converted is None:
            if spec.required:
                raise RowError(f"missing required field {name!r}")
            continue
        doc[name] = converted
    popularity = _popularity(values.get("popularity"))
    if popularity is not None:
        doc["popularity_value"] = popularity
        if popularity > 0:
            doc["popularity"] = popularity
    if values.get("embedding") is not None:
        doc["embedding"] = _embedding(values["embedding"], schema.embedding.dimension)
    elif values.get("embedding_int8") is not None:
        doc["embedding"] = _quantised_embedding(
            values["embedding_int8"], values.get("embedding_scale"), schema.embedding.dimension
        )
    priors: dict[str, float] = {}
    predicted: list[str] = []
    for query, prior in schema.predicted_queries_for({**doc, "popularity": popularity or 0.0}):
        key = memory_key(query)
        if key and prior > priors.get(key, 0.0):
            priors[key] = round(prior, 6)
            if query not in predicted:
                predicted.append(query)
    if priors:
        doc["q2e_prior"] = priors
        doc["predicted_queries"] = predicted
    sources = values.get("sources")
    # Provenance only; an artist named in hundreds of rows keeps the first few.
    doc["sources"] = (
        list(sources)[:MAX_SOURCES] if isinstance(sources, list) and sources else [origin]
    )
    return doc


def unknown_fields(schema: CatalogSchema, keys: set[str]) -> set[str]:
    """Keys of a row that the schema does not know (they are ignored on ingest)."""
    known = set(schema.fields) | {"id", "entity_type", "popularity", "sources", *VECTOR_KEYS}
    return keys - known
