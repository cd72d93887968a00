"""What every benchmark prints: percentiles and one ``name: value unit`` line per figure."""

from __future__ import annotations

import math


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank), e.g. ``pct(v, 0.99)`` for p99."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def line(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.4g} {unit}", flush=True)
