"""The Q2E memory index: query-to-entity scores learned from engagement, with forward decay."""

from ._memory import (
    HALF_LIFE_DAYS,
    MemoryBatch,
    MemoryUpdate,
    MemoryWrite,
    apply_memory,
    decay_scale,
    forget_namespaces,
    namespaced,
    observed_entities,
    reset_memory,
)

__all__ = [
    "HALF_LIFE_DAYS",
    "MemoryBatch",
    "MemoryUpdate",
    "MemoryWrite",
    "apply_memory",
    "decay_scale",
    "forget_namespaces",
    "namespaced",
    "observed_entities",
    "reset_memory",
]
