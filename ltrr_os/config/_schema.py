"""Catalog schema: which fields a catalog has and what each is for.

A schema is the one place a team describes its catalog. The index mapping, the retrieval templates'
field lists, the query-understanding lexicon, the embedding text and the memory cold start are all
derived from it, so the same code serves music tracks and plain documents.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._errors import ConfigError

FIELD_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
RESERVED_FIELDS = frozenset(
    {
        "id",
        "entity_type",
        "popularity",
        "popularity_value",
        "q2e",
        "q2e_prior",
        "predicted_queries",
        "embedding",
        "sources",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextField(_Strict):
    """Full text. `analysis` picks the analyzers: titles (prefixes, shingles), names (fuzzy
    matching of people and bands), prose (stemmed English)."""

    type: Literal["text"]
    analysis: Literal["title", "name", "prose"] = "title"
    boost: float = Field(default=1.0, gt=0, le=100)
    required: bool = False
    slot: str | None = Field(default=None, description="query-understanding slot for its values")
    max_chars: int = Field(default=2000, ge=1, le=100_000)


class KeywordField(_Strict):
    """A structured attribute: exact, multi-valued values such as genres or eras."""

    type: Literal["keyword"]
    required: bool = False
    slot: str | None = None
    max_values: int = Field(default=20, ge=1, le=1000)
    max_chars: int = Field(default=200, ge=1, le=10_000)


class NumberField(_Strict):
    """A number kept for filters and ranking features (year, energy, valence...)."""

    type: Literal["integer", "float"]
    required: bool = False


FieldSpec = TextField | KeywordField | NumberField


class PredictedQuery(_Strict):
    """A query an entity is expected to answer before any click, with its prior Q2E score.

    `template` names fields in braces; a multi-valued field expands into one query per value.
    The prior is scaled by the entity's popularity when `by_popularity` is set, so that for a
    broad predicted query ("rock") popular entities come first."""

    template: str
    prior: float = Field(gt=0, le=100)
    entity_types: list[str] | None = None
    by_popularity: bool = False


class Relation(_Strict):
    """Entities related to a hit: those of `to_types` whose fields equal the hit's (`fields`:
    the hit's field -> the related entity's field, all equal). Matched at query time, so a new
    entity is related as soon as it is in the catalog."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,30}$")
    from_types: list[str] = Field(min_length=1)
    to_types: list[str] = Field(min_length=1)
    fields: dict[str, str] = Field(min_length=1)


class EmbeddingSpec(_Strict):
    text: str = Field(description="template of the text embedded for each entity")
    dimension: int = Field(default=384, ge=2, le=4096)


class CatalogSchema(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,30}$")
    description: str = ""
    entity_types: list[str] = Field(min_length=1)
    fields: dict[str, FieldSpec] = Field(min_length=1)
    embedding: EmbeddingSpec
    predicted_queries: list[PredictedQuery] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> CatalogSchema:
        for name in self.fields:
            if not re.match(FIELD_NAME, name):
                raise ValueError(f"field name {name!r} must match {FIELD_NAME}")
            if name in RESERVED_FIELDS:
                raise ValueError(f"field name {name!r} is reserved by ltrr-os")
        if not self.text_fields:
            raise ValueError("a schema needs at least one text field")
        for template in [self.embedding.text, *(p.template for p in self.predicted_queries)]:
            unknown = set(_PLACEHOLDER.findall(template)) - set(self.fields) - {"entity_type"}
            if unknown:
                raise ValueError(f"template {template!r} names unknown fields {sorted(unknown)}")
        for predicted in self.predicted_queries:
            for entity_type in predicted.entity_types or []:
                if entity_type not in self.entity_types:
                    raise ValueError(f"predicted query names unknown entity type {entity_type!r}")
        for relation in self.relations:
            types = set(relation.from_types) | set(relation.to_types)
            if unknown_types := types - set(self.entity_types):
                raise ValueError(
                    f"relation {relation.name!r} names unknown entity types {sorted(unknown_types)}"
                )
            names = set(relation.fields) | set(relation.fields.values())
            usable = set(self.text_fields) | set(self.keyword_fields)
            if unusable := names - usable:
                raise ValueError(
                    f"relation {relation.name!r} needs text or keyword fields, "
                    f"not {sorted(unusable)}"
                )
        return self

    @property
    def text_fields(self) -> dict[str, TextField]:
        return {n: f for n, f in self.fields.items() if isinstance(f, TextField)}

    @property
    def keyword_fields(self) -> dict[str, KeywordField]:
        return {n: f for n, f in self.fields.items() if isinstance(f, KeywordField)}

    @property
    def number_fields(self) -> dict[str, NumberField]:
        return {n: f for n, f in self.fields.items() if isinstance(f, NumberField)}

    @property
    def slots(self) -> dict[str, str]:
        """Slot name -> the field whose values fill it."""
        return {
            spec.slot: name
            for name, spec in self.fields.items()
            if isinstance(spec, TextField | KeywordField) and spec.slot
        }

    def embedding_text(self, entity: Mapping[str, Any]) -> str:
        """The text the encoder sees for an entity (multi-valued fields joined by spaces)."""
        return " ".join(render(self.embedding.text, entity, join=True).split())

    def predicted_queries_for(self, entity: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
        """(query, prior) pairs for an entity's memory cold start."""
        popularity = float(entity.get("popularity") or 0.0)
        for predicted in self.predicted_queries:
            if predicted.entity_types and entity.get("entity_type") not in predicted.entity_types:
                continue
            prior = predicted.prior * (popularity if predicted.by_popularity else 1.0)
            if prior <= 0:
                continue
            for query in expand(predicted.template, entity):
                yield query, prior


def _values(entity: Mapping[str, Any], name: str) -> list[str]:
    value = entity.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)]


def render(template: str, entity: Mapping[str, Any], *, join: bool) -> str:
    """Fill a template; with join, a multi-valued field becomes its values separated by spaces."""
    return _PLACEHOLDER.sub(
        lambda m: " ".join(_values(entity, m.group(1))) if join else "", template
    )


def expand(template: str, entity: Mapping[str, Any], limit: int = 20) -> Iterator[str]:
    """Every filling of a template, one per combination of multi-valued fields; none if a field
    it names is empty."""
    names = _PLACEHOLDER.findall(template)
    choices = [_values(entity, name) for name in names]
    if any(not c for c in choices):
        return
    parts = _PLACEHOLDER.split(template)  # literal, name, literal, name, ..., literal
    for combination in itertools.islice(itertools.product(*choices), limit):
        pieces = [part if i % 2 == 0 else combination[i // 2] for i, part in enumerate(parts)]
        text = " ".join("".join(pieces).split())
        if text:
            yield text


BUILTIN_SCHEMAS = ("music", "documents")


def load_schema(name_or_path: str | Path) -> CatalogSchema:
    """A shipped schema by name ('music', 'documents') or a TOML file by path."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_SCHEMAS:
        source = resources.files(__package__).joinpath("schemas", f"{name_or_path}.toml")
        text, origin = source.read_text(encoding="utf-8"), f"built-in schema {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"no schema {str(name_or_path)!r}: neither a built-in schema "
                f"({', '.join(BUILTIN_SCHEMAS)}) nor a file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read schema file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"schema file {path} is not UTF-8 text") from None
        origin = f"schema file {path}"
    try:
        return CatalogSchema.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{origin} is nested too deeply") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'schema'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{origin} is invalid: {problems}") from None
