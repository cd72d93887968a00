"""The force filter chain: small filters, each with tiny state and a stated delay.

Spike rejection (``Median``) runs first; smoothing (``MovingAverage``, ``Ema``) after it. The
over-pressure alarm taps the signal between the two stages, so an alarm never waits for
smoothing: its delay is the spike stage's delay only.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol


class Filter(Protocol):
    """One stage of the chain."""

    @property
    def delay_samples(self) -> float:
        """Samples of lag this stage adds (group delay; for ``Median``, samples until a step
        passes through)."""
        ...

    def __call__(self, x: float) -> float: ...

    def reset(self) -> None: ...


class Median:
    """Median of the last ``window`` samples: removes spikes shorter than half the window."""

    def __init__(self, window: int) -> None:
        if window < 1 or window % 2 == 0:
            raise ValueError(f"median window must be odd and >= 1, got {window}")
        self.window = window
        self._buf: deque[float] = deque(maxlen=window)

    @property
    def delay_samples(self) -> float:
        return float((self.window - 1) // 2)

    def __call__(self, x: float) -> float:
        self._buf.append(x)
        return statistics.median(self._buf)

    def reset(self) -> None:
        self._buf.clear()


class MovingAverage:
    """Mean of the last ``window`` samples."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"moving average window must be >= 1, got {window}")
        self.window = window
        self._buf: deque[float] = deque(maxlen=window)
        self._sum = 0.0

    @property
    def delay_samples(self) -> float:
        return (self.window - 1) / 2

    def __call__(self, x: float) -> float:
        if len(self._buf) == self.window:
            self._sum -= self._buf[0]
        self._buf.append(x)
        self._sum += x
        return self._sum / len(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._sum = 0.0


class Ema:
    """Exponential moving average; the first sample initialises it (no ramp from zero)."""

    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"ema alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._y: float | None = None

    @property
    def delay_samples(self) -> float:
        return (1.0 - self.alpha) / self.alpha

    def __call__(self, x: float) -> float:
        self._y = x if self._y is None else self._y + self.alpha * (x - self._y)
        return self._y

    def reset(self) -> None:
        self._y = None


class Chain:
    """Filters applied in order."""

    def __init__(self, filters: Iterable[Filter] = ()) -> None:
        self.filters: Sequence[Filter] = tuple(filters)

    @property
    def delay_samples(self) -> float:
        return sum(f.delay_samples for f in self.filters)

    def __call__(self, x: float) -> float:
        for f in self.filters:
            x = f(x)
        return x

    def reset(self) -> None:
        for f in self.filters:
            f.reset()


def build_filter(kind: str, window: int | None = None, alpha: float | None = None) -> Filter:
    """Make one filter from its config name and parameter.

    The parameter has no default here: the config schema is the one place defaults live, and a
    parsed filter always carries its kind's parameter.
    """
    if kind in ("median", "moving_average"):
        if window is None:
            raise ValueError(f"a {kind} filter needs a window")
        return Median(window) if kind == "median" else MovingAverage(window)
    if kind == "ema":
        if alpha is None:
            raise ValueError("an ema filter needs an alpha")
        return Ema(alpha)
    raise ValueError(f"unknown filter kind {kind!r}")
