"""Retrieval strategies: stored search templates plus descriptors, run in one round trip."""

from ._base import SOURCE_TYPES, Seed, SourceType, Strategy, StrategyContext
from ._builtin import (
    Exploration,
    Fresh,
    Lexical,
    Memory,
    Personal,
    PersonalTaste,
    Related,
    Structured,
    Vector,
)
from ._registry import get_strategy, register, strategies
from ._retrieve import (
    Candidate,
    Retrieval,
    StrategyResult,
    retrieve,
    retrieve_many,
    retrieve_many_async,
)

__all__ = [
    "SOURCE_TYPES",
    "Candidate",
    "Exploration",
    "Fresh",
    "Lexical",
    "Memory",
    "Personal",
    "PersonalTaste",
    "Related",
    "Retrieval",
    "Seed",
    "SourceType",
    "Strategy",
    "StrategyContext",
    "StrategyResult",
    "Structured",
    "Vector",
    "get_strategy",
    "register",
    "retrieve",
    "retrieve_many",
    "retrieve_many_async",
    "strategies",
]
