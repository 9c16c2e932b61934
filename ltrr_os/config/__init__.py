"""Configuration: runtime settings and catalog schemas."""

from ._schema import (
    BUILTIN_SCHEMAS,
    CatalogSchema,
    EmbeddingSpec,
    KeywordField,
    NumberField,
    PredictedQuery,
    Relation,
    TextField,
    load_schema,
)
from ._settings import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_COST_PER_CANDIDATE,
    LtrrSettings,
    load_settings,
)

__all__ = [
    "BUILTIN_SCHEMAS",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_COST_PER_CANDIDATE",
    "CatalogSchema",
    "EmbeddingSpec",
    "KeywordField",
    "LtrrSettings",
    "NumberField",
    "PredictedQuery",
    "Relation",
    "TextField",
    "load_schema",
    "load_settings",
]
