"""Time sources for the shell.

The core never reads a clock: the shell stamps every input with ``monotonic()`` and passes wall
time for records only. Simulation swaps the real clock for a :class:`SimClock` whose virtual time
is advanced by the simulator, so a scenario runs faster than real time with every timestamp,
timeout and duration still consistent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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

    ``wall()`` is a calendar for the simulation's records: virtual time elapsed since a start
    date. An accelerated run covers ``span_s`` virtual seconds in ``span_s / speed`` real ones,
    so its calendar starts early enough (``span_s`` minus the real time it takes) to end no
    later than the run really does; and it never shows a moment after the real time now, so a
    simulated record never lies in the future.

    With ``system_calendar`` (real time only: ``speed`` 1) ``wall()`` is the system's clock
    itself, steps and all, as on the device: a simulation then dates its records the way the
    daemon on a Pi does, wrong until NTP sets the clock (daemon/clock_sync.py).
    """

    def __init__(
        self,
        speed: float = 1.0,
        start: float = 0.0,
        wall_start: float | None = None,
        *,
        span_s: float = 0.0,
        real_wall: Callable[[], float] = time.time,
        system_calendar: bool = False,
    ):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if system_calendar and speed != 1:
            raise ValueError(f"the system's calendar runs in real time: speed 1, not {speed:g}")
        self.system_calendar = system_calendar
        self._speed = speed
        self._start = start
        self._now = start
        self._real_wall = real_wall
        ahead = max(0.0, span_s - span_s / speed)
        self._wall_start = real_wall() - ahead if wall_start is None else wall_start
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        return self._speed

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wall(self) -> float:
        if self.system_calendar:
            return self._real_wall()
        with self._lock:
            virtual = self._wall_start + (self._now - self._start)
        return min(virtual, self._real_wall())

    def resume_after(self, wall: float) -> None:
        """Never let the simulated calendar run behind a record already made (an earlier run
        that ended moments ago): the next run starts after it, and while that would put it
        ahead of the real time, :meth:`wall` holds it at the real time."""
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
