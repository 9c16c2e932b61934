"""Fitting a plan into the candidate budget, deterministically, two ways.

Static plans are scaled proportionally (their shape is the point of a hand-written plan); learned
plans are cut largest first, so the cheap, precise draws a bandit chose survive intact."""

from __future__ import annotations

import math


def scale_to_budget(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """Every size scaled by budget/total, rounded by largest remainder (ties: plan order), so the
    plan spends exactly the budget when it would exceed it."""
    total = sum(sizes.values())
    if total <= budget:
        return dict(sizes)
    exact = {name: size * budget / total for name, size in sizes.items()}
    scaled = {name: math.floor(value) for name, value in exact.items()}
    order = sorted(exact, key=lambda name: scaled[name] - exact[name])  # stable: plan order
    for name in order[: budget - sum(scaled.values())]:
        scaled[name] += 1
    return scaled


def cap_to_budget(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """Every size capped at the largest common cap the budget allows (water-filling): the largest
    draws shrink first and draws below the cap are untouched."""
    if sum(sizes.values()) <= budget:
        return dict(sizes)
    low, high = 0, max(sizes.values())  # the cap: sum(min(size, low)) <= budget always holds
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(size, middle) for size in sizes.values()) <= budget:
            low = middle
        else:
            high = middle - 1
    return {name: min(size, low) for name, size in sizes.items()}
