"""Time sources for the shell.

The core never reads a clock: the shell stamps every input with ``monotonic()`` and passes wall
time for records only. Simulation swaps the real clock for a :class:`SimClock` whose virtual time
is advanced by the simulator, so a scenario runs faster than real time with every timestamp,
timeout and duration still consistent.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the shell needs from a time source."""

    @property
    def speed(self) -> float:
        """Virtual seconds per real second (1.0 for the real clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences mean anything."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (UTC), for records only."""
        ...

    def to_real(self, seconds: float) -> float:
        """Convert a virtual duration to the real duration a thread should wait."""
        ...


class RealClock:
    """The machine's clocks."""

    speed = 1.0

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def to_real(self, seconds: float) -> float:
        return seconds


class SimClock:
    """Virtual time, advanced explicitly by the simulator.

    ``wall()`` is the real wall time at construction plus the virtual time elapsed, so records
    made in an accelerated simulation still carry plausible dates.
    """

    def __init__(self, speed: float = 1.0, start: float = 0.0, wall_start: float | None = None):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self._speed = speed
        self._start = start
        self._now = start
        self._wall_start = time.time() if wall_start is None else wall_start
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        return self._speed

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wall(self) -> float:
        with self._lock:
            return self._wall_start + (self._now - self._start)

    def resume_after(self, wall: float) -> None:
        """Never let the simulated calendar run behind a record already made: an accelerated
        run ends "in the future", and the next run must not start before it."""
        with self._lock:
            if self._wall_start + (self._now - self._start) < wall:
                self._wall_start = wall - (self._now - self._start)

    def to_real(self, seconds: float) -> float:
        return seconds / self._speed

    def advance_to(self, t: float) -> None:
        """Move virtual time forward to ``t``; time never goes backwards."""
        with self._lock:
            self._now = max(self._now, t)

    def advance(self, dt: float) -> None:
        """Move virtual time forward by ``dt`` seconds."""
        with self._lock:
            self._now += max(0.0, dt)
