"""What the cluster knows about the catalog: its schema (recorded by bootstrap) and the
query-understanding lexicon built from its entities."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError

from .._errors import LtrrError
from ..config import CatalogSchema, LtrrSettings
from ..understanding import Lexicon, build_lexicon


def catalog_schema(client: OpenSearch, settings: LtrrSettings) -> CatalogSchema:
    """The schema the live catalog was bootstrapped with."""
    alias = settings.index_name("catalog")
    try:
        mappings = client.indices.get_mapping(index=alias)
    except NotFoundError:
        raise LtrrError(f"no catalog at {alias}: run `ltrr bootstrap` first") from None
    index = next(iter(mappings))
    meta = (mappings[index]["mappings"].get("_meta") or {}).get("ltrr") or {}
    if "schema" not in meta:
        raise LtrrError(f"{index} was not created by ltrr bootstrap (no schema in its _meta)")
    return CatalogSchema.model_validate(meta["schema"])


LEXICON_ID = "lexicon"


def catalog_entities(
    client: OpenSearch, settings: LtrrSettings, schema: CatalogSchema
) -> Iterator[dict[str, Any]]:
    """Every entity of the live catalog with its id, type, popularity, text fields and slot
    attributes (no vectors or memory)."""
    fields = ["entity_type", "popularity_value", *schema.text_fields, *schema.slots.values()]
    hits = helpers.scan(
        client,
        index=settings.index_name("catalog"),
        query={"query": {"match_all": {}}, "_source": sorted(set(fields))},
        size=2000,
    )
    for hit in hits:
        source = hit["_source"]
        yield {**source, "id": hit["_id"], "popularity": source.get("popularity_value", 0.0)}


def entity_vectors(
    client: OpenSearch, settings: LtrrSettings, ids: Iterable[str]
) -> dict[str, list[float]]:
    """The embeddings of these entities (those found), for the users' tastes."""
    wanted = sorted(set(ids))
    found: dict[str, list[float]] = {}
    for start in range(0, len(wanted), 500):
        docs = client.mget(
            index=settings.index_name("catalog"),
            body={"ids": wanted[start : start + 500]},
            _source=["embedding"],
        )["docs"]
        for doc in docs:
            vector = (doc.get("_source") or {}).get("embedding") if doc.get("found") else None
            if vector:
                found[doc["_id"]] = [float(v) for v in vector]
    return found


def refresh_lexicon(client: OpenSearch, settings: LtrrSettings, schema: CatalogSchema) -> Lexicon:
    """Rebuild the query-understanding lexicon from the live catalog and share it through the
    state index, so every client understands queries against the same catalog."""
    lexicon = build_lexicon(catalog_entities(client, settings, schema), schema)
    client.index(
        index=settings.index_name("state"),
        id=LEXICON_ID,
        body={
            "kind": LEXICON_ID,
            "updated_at": datetime.now(UTC).isoformat(),
            "payload": lexicon.model_dump(mode="json"),
        },
        refresh=True,
    )
    return lexicon


def load_lexicon(client: OpenSearch, settings: LtrrSettings) -> Lexicon:
    """The shared lexicon; built on the spot (and shared) when the catalog has none yet."""
    found = client.get(index=settings.index_name("state"), id=LEXICON_ID, ignore=404)
    if found.get("found"):
        return Lexicon.model_validate(found["_source"]["payload"])
    return refresh_lexicon(client, settings, catalog_schema(client, settings))
