"""Index bodies of ltrr-os' indices, composed from index_templates/ and the catalog schema.

Each logical index (catalog, ubi_queries, ubi_events) is a composable index template over component
templates. The JSON components in index_templates/components/ are static; the catalog's field
mappings are generated from its schema. A fingerprint of the composed body tells bootstrap whether
the live index is current.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from ..config import CatalogSchema, KeywordField, LtrrSettings, NumberField, TextField

KNN_METHOD: dict[str, Any] = {
    "name": "hnsw",
    "engine": "lucene",
    "space_type": "cosinesimil",
    "parameters": {"m": 16, "ef_construction": 64},
}


def templates_dir() -> Traversable:
    """index_templates/, packaged into the wheel, or at the top of a source checkout."""
    packaged = resources.files("ltrr_os").joinpath("_index_templates")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "index_templates"


def load_component(name: str) -> dict[str, Any]:
    text = templates_dir().joinpath("components", f"{name}.json").read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text)
    return body


def _text_mapping(spec: TextField) -> dict[str, Any]:
    keyword = {"type": "keyword", "normalizer": "ltrr_keyword", "ignore_above": 256}
    if spec.analysis == "prose":
        return {
            "type": "text",
            "analyzer": "ltrr_english",
            "fields": {"folded": {"type": "text", "analyzer": "ltrr_folded"}},
        }
    subfields: dict[str, Any] = {
        "prefix": {"type": "text", "analyzer": "ltrr_prefix", "search_analyzer": "ltrr_folded"},
        "compact": {"type": "text", "analyzer": "ltrr_compact"},
        "keyword": keyword,
    }
    if spec.analysis == "title":
        subfields["shingles"] = {"type": "text", "analyzer": "ltrr_shingles"}
    return {"type": "text", "analyzer": "ltrr_folded", "fields": subfields}


def field_mapping(spec: TextField | KeywordField | NumberField) -> dict[str, Any]:
    if isinstance(spec, TextField):
        return _text_mapping(spec)
    if isinstance(spec, KeywordField):
        return {"type": "keyword", "normalizer": "ltrr_keyword", "ignore_above": spec.max_chars}
    return {"type": spec.type}


def catalog_fields_component(schema: CatalogSchema) -> dict[str, Any]:
    """The schema's own fields and its embedding, as a component template."""
    properties = {name: field_mapping(spec) for name, spec in schema.fields.items()}
    properties["embedding"] = {
        "type": "knn_vector",
        "dimension": schema.embedding.dimension,
        "method": KNN_METHOD,
    }
    return {
        "_meta": {"description": f"Fields of the {schema.name!r} catalog schema"},
        "template": {"settings": {"index": {"knn": True}}, "mappings": {"properties": properties}},
    }


@dataclass(frozen=True)
class LogicalIndex:
    """An index ltrr-os owns: an alias over versioned physical indices `<alias>_v<N>`."""

    name: str
    components: dict[str, dict[str, Any]]
    replicas: int
    shards: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    shared_read_alias: str | None = None
    """The read alias other tools know this index by (UBI dashboards read `ubi_queries`)."""
    join_shared_alias: bool = False

    def alias(self, settings: LtrrSettings) -> str:
        return settings.index_name(self.name)

    def component_name(self, settings: LtrrSettings, component: str) -> str:
        return settings.index_name(f"{self.name}-{component}")

    def index_settings(self) -> dict[str, int]:
        """Shards and replicas, from the settings. Shards are in the fingerprint (a change
        reindexes); replicas are not (a change is a live settings update)."""
        return {"number_of_shards": self.shards, "number_of_replicas": self.replicas}

    def body(self) -> dict[str, Any]:
        """Settings and mappings as OpenSearch composes them, plus our _meta with a fingerprint."""
        composed: dict[str, Any] = {"settings": {}, "mappings": {}}
        for component in self.components.values():
            _merge(composed, copy.deepcopy(component.get("template", {})))
        composed["settings"].setdefault("index", {}).update(self.index_settings())
        fingerprint = self._fingerprint(composed, replicas_in=False)
        composed["mappings"]["_meta"] = {"ltrr": {**self.meta, "fingerprint": fingerprint}}
        return composed

    def fingerprint(self) -> str:
        return str(self.body()["mappings"]["_meta"]["ltrr"]["fingerprint"])

    def current(self, fingerprint: str | None, replicas: int) -> bool:
        """Whether a live index of this fingerprint, with this many replicas, needs no reindex:
        it is this body whatever its replicas; versions made before replicas left the
        fingerprint hashed them in, and are current too when the rest matches."""
        composed = self.body()
        wanted = composed["mappings"].pop("_meta")["ltrr"]["fingerprint"]
        if fingerprint == wanted:
            return True
        composed["settings"]["index"]["number_of_replicas"] = replicas
        return fingerprint == self._fingerprint(composed, replicas_in=True)

    def _fingerprint(self, composed: dict[str, Any], *, replicas_in: bool) -> str:
        hashed = composed
        if not replicas_in:
            hashed = {**composed, "settings": copy.deepcopy(composed["settings"])}
            hashed["settings"]["index"].pop("number_of_replicas", None)
        digest = hashlib.sha256(json.dumps([hashed, self.meta], sort_keys=True).encode())
        return digest.hexdigest()[:16]


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _with_analysis(component: dict[str, Any]) -> dict[str, Any]:
    """OpenSearch validates each component template alone, so a component whose mappings name our
    analyzers must carry their definitions too."""
    combined = copy.deepcopy(component)
    _merge(combined, {"template": load_component("analysis")["template"]})
    return combined


INGEST_PIPELINE = "ubi-ingest"
"""The pipeline (prefixed) that stamps every UBI document with the cluster's time of arrival."""


def ingest_pipeline() -> dict[str, Any]:
    """`ingested_at`, set once when a document first reaches the cluster (a reindex keeps it):
    the order in which the learner reads the logs, whatever clocks the senders had."""
    return {
        "description": "ltrr-os: when a UBI document reached the cluster (the learner's order)",
        "processors": [
            {
                "set": {
                    "field": "ingested_at",
                    "value": "{{_ingest.timestamp}}",
                    "override": False,
                }
            }
        ],
    }


def _ingested(settings: LtrrSettings) -> dict[str, Any]:
    pipeline = settings.index_name(INGEST_PIPELINE)
    return {"template": {"settings": {"index": {"default_pipeline": pipeline}}}}


def logical_indices(settings: LtrrSettings, schema: CatalogSchema) -> list[LogicalIndex]:
    return [
        LogicalIndex(
            name="catalog",
            components={
                "base": _with_analysis(load_component("catalog-base")),
                "fields": _with_analysis(catalog_fields_component(schema)),
            },
            replicas=settings.index_replicas,
            shards=settings.index_shards,
            meta={"schema": schema.model_dump(mode="json")},
        ),
        LogicalIndex(
            name="ubi_queries",
            components={"mappings": load_component("ubi-queries"), "ingest": _ingested(settings)},
            replicas=settings.index_replicas,
            shards=settings.index_shards,
            shared_read_alias="ubi_queries",
            join_shared_alias=settings.ubi_shared_aliases,
        ),
        LogicalIndex(
            name="ubi_events",
            components={"mappings": load_component("ubi-events"), "ingest": _ingested(settings)},
            replicas=settings.index_replicas,
            shards=settings.index_shards,
            shared_read_alias="ubi_events",
            join_shared_alias=settings.ubi_shared_aliases,
        ),
        LogicalIndex(
            name="state",
            components={"mappings": load_component("state")},
            replicas=settings.index_replicas,
        ),
        LogicalIndex(
            name="models",
            components={"mappings": load_component("models")},
            replicas=settings.index_replicas,
        ),
        LogicalIndex(
            name="profiles",
            components={"mappings": load_component("profiles")},
            replicas=settings.index_replicas,
        ),
    ]
