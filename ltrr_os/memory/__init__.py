"""The Q2E memory index: query-to-entity scores learned from engagement."""

from ._memory import HALF_LIFE_DAYS, MemoryUpdate, observed_entities, remember, reset_memory

__all__ = ["HALF_LIFE_DAYS", "MemoryUpdate", "observed_entities", "remember", "reset_memory"]
