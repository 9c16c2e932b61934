"""The strategy registry: a new strategy is a template plus a registered descriptor."""

from __future__ import annotations

from .._errors import LtrrError
from ._base import Strategy
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

_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Make a strategy available by its name (bootstrap stores its template)."""
    if strategy.name in _REGISTRY and type(_REGISTRY[strategy.name]) is not type(strategy):
        raise LtrrError(f"a different strategy is already registered as {strategy.name!r}")
    _REGISTRY[strategy.name] = strategy
    return strategy


def strategies() -> dict[str, Strategy]:
    return dict(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise LtrrError(f"unknown strategy {name!r}; known: {known}") from None


for _builtin in (
    Lexical(),
    Structured(),
    Vector(),
    Memory(),
    Exploration(),
    Related(),
    Personal(),
    PersonalTaste(),
    Fresh(),
):
    register(_builtin)
