"""Human-readable lines for what the daemon does: zone changes, alarms, faults.

The wording itself is :mod:`dermaguard.core.words`."""

from __future__ import annotations

import sys
from typing import TextIO

from dermaguard.common.line_writer import LineWriter
from dermaguard.core.events import (
    CaseStatus,
    Effect,
    EmitEvent,
    ForceSample,
    Zone,
)
from dermaguard.core.words import case_word, describe


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


class ConsolePrinter:
    """An effect sink that prints a line per zone change and per event."""

    #: The effects it acts on (the runtime offers it no others).
    effect_types = (ForceSample, EmitEvent, CaseStatus)

    def __init__(self, t0: float, out: TextIO | LineWriter | None = None) -> None:
        self.t0 = t0
        self.out = out or sys.stdout
        self._zone: Zone | None = None
        self._force: float | None = None
        self._case_state: tuple[str, bool, bool] | None = None

    def _line(self, t: float, text: str) -> None:
        self.out.write(f"[{t - self.t0:8.2f} s] {text}\n")
        self.out.flush()

    def __call__(self, effect: Effect) -> None:
        if isinstance(effect, ForceSample):
            self._force = effect.force_n
            if effect.zone != self._zone and effect.zone is not None:
                force = (
                    f"{effect.force_n:5.2f} N smoothed" if effect.force_n is not None else "unknown"
                )
                self._line(effect.t, f"zone {effect.zone:<5} {force}")
            self._zone = effect.zone
        elif isinstance(effect, EmitEvent):
            self._line(effect.event.t, describe(effect.event))
        elif isinstance(effect, CaseStatus):
            self._case(effect)

    def _case(self, status: CaseStatus) -> None:
        key = (status.state, status.uv_on, status.sterile)
        if key != self._case_state:
            self._case_state = key
            text = f"case {case_word(status.state)}"
            if status.state == "aborted" and status.abort_reason:
                text += f" ({status.abort_reason})"
            text += f", UV {'ON' if status.uv_on else 'off'}"
            text += ", roller disinfected" if status.sterile else ", roller not disinfected"
            self._line(status.t, text)
        elif status.remaining_s is not None:
            self._line(status.t, f"case disinfecting: {_minutes(status.remaining_s)} left")
