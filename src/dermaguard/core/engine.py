"""The deterministic core: ``Engine.handle(input) -> list[Effect]``.

One thread calls it; it never reads a clock, pin, socket or file. Indicator effects come first
in every returned list, so the shell shows an alarm before it does anything slow.
"""

from __future__ import annotations

from dataclasses import dataclass

from dermaguard.core.calibration import Calibration
from dermaguard.core.events import (
    Effect,
    EmitEvent,
    Event,
    ForceRead,
    ForceSample,
    Input,
    Priority,
    ReadFailed,
    ShowIndicators,
    Tick,
)
from dermaguard.core.filters import Filter
from dermaguard.core.pressure import PressureMachine, PressureParams, PressureUpdate


@dataclass(frozen=True, slots=True)
class EngineParams:
    pressure: PressureParams


class Engine:
    """Routes inputs to the state machines and turns their outcome into effects."""

    def __init__(
        self,
        params: EngineParams,
        calibration: Calibration,
        spike: tuple[Filter, ...] = (),
        smoothing: tuple[Filter, ...] = (),
    ) -> None:
        self.params = params
        self.pressure = PressureMachine(params.pressure, calibration, spike, smoothing)
        self._shown: ShowIndicators | None = None
        self.now: float | None = None

    def handle(self, inp: Input) -> list[Effect]:
        """Process one input; returns the effects to apply, indicators first."""
        self.now = inp.t
        update: PressureUpdate | None = None
        if isinstance(inp, ForceRead):
            update = self.pressure.on_read(inp.t, inp.raw)
        elif isinstance(inp, ReadFailed):
            update = self.pressure.on_timeout(inp.t)
        elif isinstance(inp, Tick):
            pass
        effects: list[Effect] = []
        shown = self.indicators()
        if shown != self._shown:
            self._shown = shown
            effects.append(shown)
        if update is not None:
            if update.sample:
                effects.append(ForceSample(inp.t, update.force_n, update.zone))
            effects.extend(EmitEvent(e) for e in update.events)
        return effects

    def indicators(self) -> ShowIndicators:
        """The highest-priority alarm wins; the zone colour shows when nothing alarms."""
        alarm: Priority | None = None
        reason: str | None = None
        if self.pressure.over_pressure:
            alarm, reason = Priority.HIGH, "over_pressure"
        elif self.pressure.fault is not None:
            alarm, reason = Priority.MEDIUM, "sensor_fault"
        return ShowIndicators(self.pressure.zone, alarm, reason)

    def startup_events(self, t: float) -> list[Effect]:
        """Effects to apply once at start: the initial indicator state and ``daemon_started``."""
        self._shown = self.indicators()
        return [self._shown, EmitEvent(Event("daemon_started", t, {}))]
