"""The catalog: reading rows, turning them into entities by the schema, and bulk ingest."""

from ._entities import RowError, prepare_entity
from ._ingest import IngestReport, ingest_rows
from ._music import MusicCatalog, build_music_catalog, editorial_judgments, track_entity_id
from ._readers import Rejection, SourceRow, read_csv, read_jsonl, read_rows
from ._sample import sample_rows
from ._store import (
    catalog_entities,
    catalog_schema,
    entity_vectors,
    load_lexicon,
    refresh_lexicon,
)

__all__ = [
    "IngestReport",
    "MusicCatalog",
    "Rejection",
    "RowError",
    "SourceRow",
    "build_music_catalog",
    "catalog_entities",
    "catalog_schema",
    "editorial_judgments",
    "entity_vectors",
    "ingest_rows",
    "load_lexicon",
    "prepare_entity",
    "read_csv",
    "read_jsonl",
    "read_rows",
    "refresh_lexicon",
    "sample_rows",
    "track_entity_id",
]
