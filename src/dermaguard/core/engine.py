"""The deterministic core: ``Engine.handle(input) -> list[Effect]``.

One thread calls it; it never reads a clock, pin, socket or file. Every returned list starts
with the safety-relevant effects: UV off (when it must go off) before anything, then the
indicators, so the shell acts on them before anything slow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dermaguard.core.calibration import Calibration
from dermaguard.core.case import CaseInput, CaseMachine, CaseParams, DockChanged
from dermaguard.core.events import (
    CaseStatus,
    Effect,
    EmitEvent,
    Event,
    ForceRead,
    ForceSample,
    Input,
    Priority,
    ReadFailed,
    SetUv,
    ShowIndicators,
    Tick,
)
from dermaguard.core.filters import Filter
from dermaguard.core.pressure import PressureMachine, PressureParams
from dermaguard.core.session import RollerState, SessionParams, SessionTracker

EngineInput = Input | CaseInput

#: The countdown is reported when the remaining time crosses a multiple of this (seconds).
COUNTDOWN_STEP_S = 30.0
#: Samples advance the case's timers at most this often (input time), to keep samples cheap.
CASE_TICK_S = 0.05


@dataclass(frozen=True, slots=True)
class EngineParams:
    pressure: PressureParams = field(default_factory=PressureParams)
    case: CaseParams = field(default_factory=CaseParams)
    session: SessionParams = field(default_factory=SessionParams)


@dataclass(frozen=True, slots=True)
class History:
    """What the engine needs from the stored past (read by the shell at start-up)."""

    last_session_no: int = 0
    last_session_end_wall: float | None = None
    roller_id: int = 1
    roller_uses: int = 0
    last_cycle_id: int = 0


class Engine:
    """Routes inputs to the state machines and turns their outcome into effects."""

    def __init__(
        self,
        params: EngineParams,
        calibration: Calibration,
        spike: tuple[Filter, ...] = (),
        smoothing: tuple[Filter, ...] = (),
        history: History | None = None,
    ) -> None:
        self.params = params
        h = history if history is not None else History()
        self.pressure = PressureMachine(params.pressure, calibration, spike, smoothing)
        self.case = CaseMachine(params.case, last_cycle_id=h.last_cycle_id)
        self.sessions = SessionTracker(
            params.session,
            last_session_no=h.last_session_no,
            last_end_wall=h.last_session_end_wall,
            roller=RollerState(h.roller_id, h.roller_uses),
        )
        self.unsterile_use = False
        self.now: float | None = None
        self.wall: float | None = None
        self._shown: ShowIndicators | None = None
        self._uv = False
        self._status: CaseStatus | None = None
        self._countdown_mark: int | None = None
        self._case_ticked = -math.inf

    def handle(self, inp: EngineInput, wall: float | None = None) -> list[Effect]:
        """Process one input; returns the effects to apply, safety effects first.

        ``wall`` is the wall-clock time (epoch seconds) for records and rest intervals; without
        it the input time stands in (tests, replays).
        """
        self.now = inp.t
        self.wall = wall = inp.t if wall is None else wall
        events: list[Event] = []
        sample: ForceSample | None = None
        if isinstance(inp, ForceRead | ReadFailed):
            update = (
                self.pressure.on_read(inp.t, inp.raw)
                if isinstance(inp, ForceRead)
                else self.pressure.on_timeout(inp.t, inp.detail)
            )
            events.extend(update.events)
            if update.sample:
                sample = ForceSample(inp.t, update.force_n, update.zone)
            if inp.t - self._case_ticked >= CASE_TICK_S:
                events.extend(self._case(Tick(inp.t)))
                events.extend(self.sessions.tick(inp.t, wall))
            events.extend(self._use_gate(inp.t, wall))
            if sample is not None:
                self.sessions.sample(inp.t, sample.force_n, sample.zone)
        else:
            events.extend(self._case(inp))
            if isinstance(inp, Tick):
                events.extend(self.sessions.tick(inp.t, wall))
            if isinstance(inp, DockChanged):
                if inp.docked:
                    self.unsterile_use = False
                    events.extend(self.sessions.docked(inp.t, wall))
                else:
                    self.sessions.undocked(inp.t)
                    events.extend(self._use_gate(inp.t, wall))
        return self._effects(inp.t, events, sample)

    def shutdown(self, t: float, wall: float | None = None) -> list[Effect]:
        """The daemon stops: UV off, and an open session is closed as ``shutdown``."""
        wall = t if wall is None else wall
        events = self.sessions.shutdown(t, wall)
        events.append(Event("daemon_stopping", t, {}))
        effects: list[Effect] = [SetUv(False)]
        effects.extend(EmitEvent(e) for e in events)
        return effects

    # -- the case and the sterility gate -------------------------------------------------------

    def _case(self, inp: CaseInput) -> list[Event]:
        self._case_ticked = inp.t
        update = self.case.handle(inp)
        if update.refused is not None:
            data: dict[str, object] = {"command": "sterilize", "ok": False, "error": update.refused}
            request_id = getattr(inp, "request_id", None)
            if request_id is not None:
                data["request_id"] = request_id
            update.events.append(Event("command_result", inp.t, data))
        return update.events

    def _use_gate(self, t: float, wall: float) -> list[Event]:
        """The first contact out of the dock starts a session; without valid sterility it
        raises ``unsterile_use`` (S8). The sterility it had is spent by that session."""
        zone = self.pressure.zone
        if self.sessions.active or self.case.docked or zone is None or zone == "none":
            return []
        if self.sessions.out_of_dock_since is None:
            return []
        valid, cycle_id = self.case.sterility(t)
        self.case.consume(t)
        events = self.sessions.contact(t, wall, valid, cycle_id if valid else None)
        if not valid:
            self.unsterile_use = True
            data = {"last_cycle_id": self.case.last_cycle_id or None}
            if self.sessions.current is not None:
                data["session_no"] = self.sessions.current.session_no
            events.append(Event("unsterile_use", t, data))
        return events

    # -- effects ---------------------------------------------------------------------------

    def _effects(self, t: float, events: list[Event], sample: ForceSample | None) -> list[Effect]:
        effects: list[Effect] = []
        uv = self.case.uv_on
        if uv != self._uv:
            self._uv = uv
            effects.append(SetUv(uv))
        shown = self.indicators()
        if shown != self._shown:
            self._shown = shown
            effects.append(shown)
        if sample is not None:
            effects.append(sample)
        effects.extend(EmitEvent(e) for e in events)
        status = self._case_status(t)
        if status is not None:
            effects.append(status)
        return effects

    def _case_status(self, t: float) -> CaseStatus | None:
        case = self.case
        remaining = case.remaining_s(t)
        sterile, _ = case.sterility(t)
        mark = None if remaining is None else math.ceil(remaining / COUNTDOWN_STEP_S)
        key = (case.state, case.uv_on, sterile, case.abort_reason)
        previous = self._status
        if (
            previous is not None
            and (previous.state, previous.uv_on, previous.sterile, previous.abort_reason) == key
            and mark == self._countdown_mark
        ):
            return None
        self._countdown_mark = mark
        self._status = CaseStatus(t, case.state, case.uv_on, remaining, sterile, case.abort_reason)
        return self._status

    def indicators(self) -> ShowIndicators:
        """The highest-priority alarm wins; the zone colour shows when nothing alarms."""
        alarm: Priority | None = None
        reason: str | None = None
        if self.pressure.over_pressure:
            alarm, reason = Priority.HIGH, "over_pressure"
        elif self.pressure.fault is not None:
            alarm, reason = Priority.MEDIUM, "sensor_fault"
        elif self.unsterile_use:
            alarm, reason = Priority.MEDIUM, "unsterile_use"
        elif self.case.state == "aborted":
            alarm, reason = Priority.LOW, "sterilization_aborted"
        return ShowIndicators(self.pressure.zone, alarm, reason)

    def startup_effects(self, t: float) -> list[Effect]:
        """Effects to apply once at start: UV off, the indicators and ``daemon_started``."""
        self._uv = False
        self._shown = self.indicators()
        return [SetUv(False), self._shown, EmitEvent(Event("daemon_started", t, {}))]
