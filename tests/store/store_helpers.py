"""Synthetic effects shaped like the core's (see dermaguard.core.session), for the store tests."""

from __future__ import annotations

import threading
from typing import Any

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import EmitEvent, Event, ForceSample, Zone

WALL0 = 1_764_096_623.0  # 2025-11-25T18:50:23Z


class FakeWall:
    """Wall clock for records: WALL0 plus the virtual time the test sets."""

    def __init__(self) -> None:
        self.t = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return WALL0 + self.t

    def at(self, t: float) -> float:
        with self._lock:
            self.t = t
        return WALL0 + t


def started_data(no: int, t_start: float, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "session_no": no,
        "started_at": iso_utc(WALL0 + t_start),
        "sterile": True,
        "cycle_id": 7,
        "rest_interval_s": None,
        "too_soon": False,
        "roller_id": 1,
        "roller_use": no,
    }
    data.update(extra)
    return data


def ended_data(no: int, t_start: float, t_end: float, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "session_no": no,
        "started_at": iso_utc(WALL0 + t_start),
        "ended_at": iso_utc(WALL0 + t_end),
        "duration_s": round(t_end - t_start, 2),
        "contact_s": round(t_end - t_start, 2),
        "zone_s": {"light": 0.0, "ok": round(t_end - t_start, 2), "high": 0.0, "over": 0.0},
        "peak_n": 2.5,
        "mean_n": 2.0,
        "over_episodes": 0,
        "longest_over_s": 0.0,
        "sterile_at_start": True,
        "cycle_id": 7,
        "rest_interval_s": None,
        "too_soon": False,
        "roller_id": 1,
        "roller_use": no,
        "end_reason": "docked",
    }
    data.update(extra)
    return data


def ev(etype: str, t: float, **data: Any) -> EmitEvent:
    return EmitEvent(Event(etype, t, data))


def started(no: int, t: float) -> EmitEvent:
    return EmitEvent(Event("session_started", t, started_data(no, t)))


def ended(no: int, t_start: float, t_end: float, **extra: Any) -> EmitEvent:
    return EmitEvent(Event("session_ended", t_end, ended_data(no, t_start, t_end, **extra)))


def samples(
    t_from: float, t_to: float, hz: float = 80.0, force: float = 2.0, zone: Zone = "ok"
) -> list[ForceSample]:
    n = round((t_to - t_from) * hz)
    return [ForceSample(t_from + i / hz, force, zone) for i in range(n)]
