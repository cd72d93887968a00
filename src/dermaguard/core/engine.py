"""The deterministic core: ``Engine.handle(input) -> list[Effect]``.

One thread calls it; it never reads a clock, pin, socket or file. Every returned list starts
with the safety-relevant effects: UV off (when it must go off) before anything, then the
indicators, so the shell acts on them before anything slow.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.calibration import Calibration, CalibrationError, check_tare, with_zero
from dermaguard.core.case import (
    CaseInput,
    CaseMachine,
    CaseParams,
    DockChanged,
    SterilizeRequested,
)
from dermaguard.core.events import (
    CaseStatus,
    ClockSync,
    Command,
    CommandName,
    DeviceState,
    DeviceStateName,
    Effect,
    EmitEvent,
    Event,
    EventType,
    ForceRead,
    ForceSample,
    Input,
    Priority,
    ReadFailed,
    SaveCalibration,
    SetUv,
    ShowIndicators,
    ThreadFailed,
    Tick,
    UvLockedOut,
    UvRefused,
)
from dermaguard.core.filters import Filter
from dermaguard.core.pressure import PressureMachine, PressureParams
from dermaguard.core.session import RollerState, SessionParams, SessionTracker
from dermaguard.core.zero_tracking import ZERO_DRIFT, ZeroTracker, ZeroTrackingParams

EngineInput = Input | CaseInput

#: The countdown is reported when the remaining time crosses a multiple of this (seconds).
COUNTDOWN_STEP_S = 30.0
#: Samples advance the case's timers at most this often (input time), to keep samples cheap.
CASE_TICK_S = 0.05
#: The ``sensor_fault`` reason of each way a read fails (``timeout`` keeps its old name).
_FAULT_REASON = {
    "timeout": "not_ready",
    "bus_error": "bus_error",
    "engine_stalled": "engine_stalled",
    "wrong_rate": "wrong_rate",
}
#: A tare judges and averages the raw codes of about the last second (core/calibration.py,
#: ``check_tare``)...
TARE_WINDOW_S = 1.0
#: ...and needs at least this many of them (8 of the 10 at 10 samples/s).
TARE_MIN_SAMPLES = 8
#: The alarms :meth:`Engine.indicators` can show. Each is named for the event that starts it,
#: so an event of one of these types is a new alarm, and a new alarm ends any silence.
ALARM_REASONS = frozenset(
    {
        EventType.OVER_PRESSURE,
        EventType.SENSOR_FAULT,
        EventType.CASE_FAULT,
        EventType.UNSTERILE_USE,
        EventType.STERILIZATION_ABORTED,
    }
)


@dataclass(frozen=True, slots=True)
class EngineParams:
    """Every parameter of the engine, taken from the config.

    No defaults here: the config schema is the one place they live (``dermaguard.config.params``
    builds these from a config or its defaults).
    """

    pressure: PressureParams
    case: CaseParams
    session: SessionParams
    #: Longest the ``silence`` command mutes the buzzer (seconds).
    silence_s: float
    zero_tracking: ZeroTrackingParams


@dataclass(frozen=True, slots=True)
class History:
    """What the engine needs from the stored past (read by the shell at start-up)."""

    last_session_no: int = 0
    last_session_end_wall: float | None = None
    #: The last session's times came from a synchronised clock (its ``clock_synced``; records
    #: without it predate the flag and count as right).
    last_session_end_synced: bool = True
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
        self.zero = ZeroTracker(params.zero_tracking)
        self.case = CaseMachine(params.case, last_cycle_id=h.last_cycle_id)
        self.sessions = SessionTracker(
            params.session,
            last_session_no=h.last_session_no,
            last_end_wall=h.last_session_end_wall,
            last_end_synced=h.last_session_end_synced,
            roller=RollerState(h.roller_id, h.roller_uses),
        )
        self.unsterile_use = False
        self.now: float | None = None
        self.wall: float | None = None
        self._shown: ShowIndicators | None = None
        self._uv = False
        self._uv_ack = False  # the shell held UV off on its own: command off again to release
        self.thread_failures = 0
        self._status: CaseStatus | None = None
        self._countdown_mark: int | None = None
        self._case_ticked = -math.inf
        self._raws: deque[tuple[float, int]] = deque(maxlen=80)
        #: The silence in force: the alarm it mutes (the one sounding when it was received)
        #: and until when. Any new alarm, or the end of that one, ends it.
        self.silence: tuple[str, float] | None = None
        self._state_key: tuple[object, ...] | None = None
        self._pending_calibration: Calibration | None = None

    def handle(self, inp: EngineInput, wall: float | None = None) -> list[Effect]:
        """Process one input; returns the effects to apply, safety effects first.

        ``wall`` is the wall-clock time (epoch seconds) for records and rest intervals; without
        it the input time stands in (tests, replays).
        """
        self.now = inp.t
        self.wall = wall = inp.t if wall is None else wall
        events: list[Event] = []
        sample: ForceSample | None = None
        if isinstance(inp, Command):
            events.extend(self._command(inp, wall))
        elif isinstance(inp, ThreadFailed):
            self.thread_failures += 1
            events.append(_thread_failed(inp))
        elif isinstance(inp, ClockSync):
            events.extend(self.sessions.clock(inp.t, wall, inp.synced))
        elif isinstance(inp, ForceRead | ReadFailed):
            if isinstance(inp, ForceRead):
                self._raws.append((inp.t, inp.raw))
            update = (
                self.pressure.on_read(inp.t, inp.raw)
                if isinstance(inp, ForceRead)
                else self.pressure.on_timeout(inp.t, inp.detail, _FAULT_REASON[inp.reason])
            )
            events.extend(update.events)
            if isinstance(inp, ForceRead):
                events.extend(self._track_zero(inp.t, inp.raw))
            if update.sample:
                sample = ForceSample(inp.t, update.force_n, update.zone)
            if inp.t - self._case_ticked >= CASE_TICK_S:
                events.extend(self._case(Tick(inp.t)))
                events.extend(self.sessions.tick(inp.t, wall))
            events.extend(self._use_gate(inp.t, wall))
            if sample is not None:
                over = self.pressure.over_pressure
                self.sessions.sample(inp.t, sample.force_n, sample.zone, over)
        else:
            if isinstance(inp, UvLockedOut | UvRefused):
                self._uv_ack = True
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
        self._end_silence(events)
        return self._effects(inp.t, wall, events, sample)

    def _end_silence(self, events: list[Event]) -> None:
        """A silence mutes only the alarm sounding when it came: a new alarm (another one, or
        the same kind starting anew) sounds, and once the muted alarm ends nothing stays muted."""
        if self.silence is None:
            return
        if any(e.type in ALARM_REASONS for e in events):
            self.silence = None
            return
        reason, until = self.silence
        if self._alarm()[1] != reason or self.now is None or self.now >= until:
            self.silence = None

    def shutdown(self, t: float, wall: float | None = None) -> list[Effect]:
        """The daemon stops: UV off, a running UV-C cycle is aborted (``daemon_stopped``) and an
        open session is closed as ``shutdown``."""
        wall = t if wall is None else wall
        effects: list[Effect] = [SetUv(False)]
        effects.extend(EmitEvent(e) for e in self.case.stop(t).events)
        self._uv = False
        status = self._case_status(t, self.case.remaining_s(t), self.case.sterility(t)[0])
        if status is not None:
            effects.append(status)
        events = self.sessions.shutdown(t, wall)
        events.append(Event(EventType.DAEMON_STOPPING, t, {}))
        effects.extend(EmitEvent(e) for e in events)
        state = self.device_state(t, wall)
        self._state_key = state.key()
        effects.append(state)  # the last snapshot: no session open any more
        return effects

    # -- commands ----------------------------------------------------------------------------

    def _command(self, cmd: Command, wall: float) -> list[Event]:
        """Answer one command with a ``command_result``; S11 holds in the case machine (a
        sterilize request with the lid open is refused there) and in :meth:`indicators`
        (silence mutes the buzzer only)."""
        if cmd.error is not None:
            return [_result(cmd, False, cmd.error)]
        handler = _HANDLERS.get(cmd.name)
        if handler is None:  # the shell validates names; this is the core's own guard
            return [_result(cmd, False, f"unknown command {cmd.name!r}")]
        return handler(self, cmd, wall)

    def _cmd_ping(self, cmd: Command, _wall: float) -> list[Event]:
        return [_result(cmd, True)]

    def _cmd_sterilize(self, cmd: Command, _wall: float) -> list[Event]:
        events = self._case(SterilizeRequested(cmd.t, cmd.request_id))
        if any(e.type == EventType.COMMAND_RESULT for e in events):
            return events  # refused: the case machine said why
        cycle_id = self.case.cycle_id
        if cycle_id is None:
            return [*events, _result(cmd, False, "the UV-C cycle did not start")]
        return [*events, _result(cmd, True, cycle_id=cycle_id)]

    def _cmd_silence(self, cmd: Command, _wall: float) -> list[Event]:
        """Mute the buzzer for the alarm sounding now, and only that one (docs/MQTT.md).

        With no alarm sounding it is refused: accepting it would read as "the buzzer is
        muted" while it would mute nothing, and no silence is ever kept for a later alarm.
        """
        _, reason = self._alarm()
        if reason is None:
            return [_result(cmd, False, NOTHING_TO_SILENCE)]
        limit = self.params.silence_s
        asked = cmd.args.get("duration_s", limit)
        duration = min(float(asked), limit)
        self.silence = (reason, cmd.t + duration)
        return [_result(cmd, True, duration_s=round(duration, 3), alarm=reason)]

    def _cmd_new_roller(self, cmd: Command, _wall: float) -> list[Event]:
        if self.sessions.active:
            return [_result(cmd, False, "a session is running: dock the roller first")]
        roller_id = self.sessions.roller.roller_id + 1
        self.sessions.new_roller(roller_id)
        data: dict[str, Any] = {"roller_id": roller_id}
        if cmd.request_id is not None:
            data["request_id"] = cmd.request_id
        return [Event(EventType.NEW_ROLLER, cmd.t, data), _result(cmd, True, roller_id=roller_id)]

    def _cmd_tare(self, cmd: Command, wall: float) -> list[Event]:
        pressure = self.pressure
        # A negative force may come from a tare taken under load: a tare is its remedy.
        if pressure.fault is not None and pressure.fault != "negative_force":
            if not pressure.blind:  # pinned at the top of the range: far from zero
                why = f"the load cell reads at the top of its range ({pressure.fault})"
                return [_result(cmd, False, f"{why}: take everything off the roller")]
            return [_result(cmd, False, f"sensor fault ({pressure.fault}): the force is unknown")]
        if self.sessions.active:
            return [_result(cmd, False, "a session is running: tare with the roller unused")]
        if pressure.zone in ("ok", "high", "over"):
            return [_result(cmd, False, f"the roller is loaded (zone {pressure.zone}): unload it")]
        recent = [raw for t, raw in self._raws if cmd.t - t <= TARE_WINDOW_S]
        if len(recent) < TARE_MIN_SAMPLES:
            return [_result(cmd, False, "no recent readings from the load cell")]
        old = pressure.calibration
        try:
            zero = check_tare(old, recent)
        except CalibrationError as exc:
            return [_result(cmd, False, str(exc))]
        cal = with_zero(old, zero, iso_utc(wall))
        pressure.set_calibration(cal)
        drift_fault = self.zero.fault
        self.zero.restart()
        self._pending_calibration = cal
        shift_n = (zero - old.offset) * old.scale_n_per_count
        data: dict[str, Any] = {
            "reason": "tare",
            "offset": round(zero, 1),
            "shift_n": round(shift_n, 4),
            "samples": len(recent),
        }
        if cmd.request_id is not None:
            data["request_id"] = cmd.request_id
        events = [Event(EventType.CALIBRATION_CHANGED, cmd.t, data)]
        if drift_fault:
            events.append(Event(EventType.SENSOR_RECOVERED, cmd.t, {"after": ZERO_DRIFT}))
        return [*events, _result(cmd, True, shift_n=data["shift_n"])]

    # -- zero tracking ---------------------------------------------------------------------------

    def _track_zero(self, t: float, raw: int) -> list[Event]:
        """Follow the zero while the roller rests in the dock with nothing pressing on it
        (core/zero_tracking.py); the filters keep running across a correction."""
        pressure, zero = self.pressure, self.zero
        if not (
            self.case.docked
            and not self.sessions.active
            and pressure.fault is None
            and pressure.zone == "none"
        ):
            zero.interrupt()
            return []
        cal = pressure.calibration
        update = zero.on_force(t, cal.force(raw))
        if not update.shift_n:
            return update.events
        offset = cal.offset + update.shift_n / cal.scale_n_per_count
        pressure.shift_zero(offset)
        return [
            Event(e.type, e.t, {**e.data, "offset": round(offset, 1)})
            if e.type == EventType.CALIBRATION_CHANGED
            else e
            for e in update.events
        ]

    # -- the case and the sterility gate -------------------------------------------------------

    def _case(self, inp: CaseInput) -> list[Event]:
        self._case_ticked = inp.t
        update = self.case.handle(inp)
        if update.refused is not None:
            data: dict[str, object] = {
                "command": CommandName.STERILIZE,
                "ok": False,
                "error": update.refused,
            }
            request_id = getattr(inp, "request_id", None)
            if request_id is not None:
                data["request_id"] = request_id
            update.events.append(Event(EventType.COMMAND_RESULT, inp.t, data))
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
            events.append(Event(EventType.UNSTERILE_USE, t, data))
        return events

    # -- effects ---------------------------------------------------------------------------

    def _effects(
        self, t: float, wall: float, events: list[Event], sample: ForceSample | None
    ) -> list[Effect]:
        effects: list[Effect] = []
        uv = self.case.uv_on
        if uv != self._uv or self._uv_ack:
            self._uv, self._uv_ack = uv, False
            effects.append(SetUv(uv))
        shown = self.indicators()
        if shown != self._shown:
            self._shown = shown
            effects.append(shown)
        if sample is not None:
            effects.append(sample)
        if self._pending_calibration is not None:
            effects.append(SaveCalibration(self._pending_calibration))
            self._pending_calibration = None
        effects.extend(EmitEvent(e) for e in events)
        case = self.case
        remaining = case.remaining_s(t)
        sterile, _ = case.sterility(t)
        status = self._case_status(t, remaining, sterile)
        if status is not None:
            effects.append(status)
        # Most samples change nothing a dashboard shows: the snapshot is built only when its
        # key moves (building it for every sample was a third of the per-sample cost).
        key = self._state_key_at(t, sterile, remaining, shown)
        if key != self._state_key:
            self._state_key = key
            effects.append(self.device_state(t, wall))
        return effects

    def _state_key_at(
        self, t: float, sterile: bool, remaining: float | None, shown: ShowIndicators
    ) -> tuple[object, ...]:
        """``device_state(t, ·).key()``, read from the same sources without building the
        snapshot (``sterile`` and ``remaining`` are the case's at ``t``, ``shown`` the
        indicators just decided). A test keeps the two equal:
        ``test_the_state_key_is_the_key_of_the_snapshot_it_stands_for``."""
        case, sessions, pressure = self.case, self.sessions, self.pressure
        current = sessions.current
        passes = None if current is None else current.segmenter
        pass_force = None if passes is None else passes.force_n
        return (
            _state_name(sessions.active, case),
            pressure.zone if pressure.force_n is not None else None,
            sterile,
            case.sterile_until(t),
            case.uv_on,
            case.lid_closed,
            case.docked,
            case.state,
            None if remaining is None else int(remaining // 30),
            None if current is None else current.session_no,
            sessions.roller.roller_id,
            sessions.roller.uses,
            pressure.fault or (ZERO_DRIFT if self.zero.fault else None),
            shown.alarm_reason,
            shown.silenced,
            self.thread_failures,
            None if passes is None else passes.count,
            passes is not None and passes.pass_open,
            None if pass_force is None else round(pass_force * 2),
            sessions.last_session_no - (1 if current is not None else 0),
            sessions.last_end_wall,
            sessions.next_allowed_wall(),
            None if current is None else current.sterile,
            None if current is None else current.too_soon,
            case.case_fault,
        )

    def device_state(self, t: float, wall: float) -> DeviceState:
        """The snapshot dashboards show (published retained on every change)."""
        case, sessions = self.case, self.sessions
        sterile, _ = case.sterility(t)
        until = case.sterile_until(t)
        shown = self._shown if self._shown is not None else self.indicators()
        current = sessions.current
        passes = None if current is None else current.segmenter
        return DeviceState(
            t=t,
            wall=wall,
            state=_state_name(sessions.active, case),
            # Before the first good sample the force is unknown, and so is the zone.
            zone=self.pressure.zone if self.pressure.force_n is not None else None,
            force_n=self.pressure.force_n,
            sterile=sterile,
            sterile_until_t=until,
            sterile_until_wall=None if until is None else round(wall + (until - t), 3),
            uv_on=case.uv_on,
            lid_closed=case.lid_closed,
            docked=case.docked,
            case=case.state,
            remaining_s=case.remaining_s(t),
            session_no=None if current is None else current.session_no,
            roller_id=sessions.roller.roller_id,
            roller_uses=sessions.roller.uses,
            fault=self.pressure.fault or (ZERO_DRIFT if self.zero.fault else None),
            alarm=shown.alarm_reason,
            silenced=shown.silenced,
            thread_failures=self.thread_failures,
            passes=None if passes is None else passes.count,
            pass_force_n=None if passes is None else passes.force_n,
            pass_open=passes is not None and passes.pass_open,
            last_session_no=sessions.last_session_no - (1 if current is not None else 0),
            last_ended_wall=sessions.last_end_wall,
            next_allowed_wall=sessions.next_allowed_wall(),
            session_sterile_at_start=None if current is None else current.sterile,
            session_too_soon=None if current is None else current.too_soon,
            case_fault=self.case.case_fault,
        )

    def _case_status(self, t: float, remaining: float | None, sterile: bool) -> CaseStatus | None:
        """The case's status when it changed or its countdown crossed a step (``remaining`` and
        ``sterile``: the case's at ``t``)."""
        case = self.case
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

    def _alarm(self) -> tuple[Priority | None, str | None]:
        """The alarm that sounds: the highest priority wins (``None`` when nothing alarms)."""
        if self.pressure.over_pressure:
            return Priority.HIGH, EventType.OVER_PRESSURE
        if self.case.case_fault is not None:
            return Priority.HIGH, EventType.CASE_FAULT
        if self.pressure.fault is not None or self.zero.fault:
            return Priority.MEDIUM, EventType.SENSOR_FAULT
        if self.unsterile_use:
            return Priority.MEDIUM, EventType.UNSTERILE_USE
        if self.case.state == "aborted":
            return Priority.LOW, EventType.STERILIZATION_ABORTED
        return None, None

    def indicators(self) -> ShowIndicators:
        """The highest-priority alarm wins; the zone colour shows when nothing alarms. The
        buzzer is silenced only while the alarm a silence was sent for still sounds."""
        alarm, reason = self._alarm()
        silenced = False
        if self.silence is not None and reason is not None and self.now is not None:
            muted, until = self.silence
            silenced = muted == reason and self.now < until
        return ShowIndicators(self.pressure.zone, alarm, reason, silenced)

    def startup_effects(self, t: float, wall: float | None = None) -> list[Effect]:
        """Effects to apply once at start: UV off, the indicators, ``daemon_started`` and the
        first state snapshot."""
        self._uv = False
        self._shown = self.indicators()
        state = self.device_state(t, t if wall is None else wall)
        self._state_key = state.key()
        return [SetUv(False), self._shown, EmitEvent(Event(EventType.DAEMON_STARTED, t, {})), state]


#: Each command's handler: the engine's side of :class:`CommandName`.
_HANDLERS: Mapping[str, Callable[[Engine, Command, float], list[Event]]] = {
    CommandName.TARE: Engine._cmd_tare,
    CommandName.STERILIZE: Engine._cmd_sterilize,
    CommandName.SILENCE: Engine._cmd_silence,
    CommandName.NEW_ROLLER: Engine._cmd_new_roller,
    CommandName.PING: Engine._cmd_ping,
}


def _state_name(in_session: bool, case: CaseMachine) -> DeviceStateName:
    """What the device is doing, as the snapshot's ``state`` says it."""
    if in_session:
        return "in_use"
    if case.state == "sterilizing":
        return "sterilizing"
    return "docked" if case.docked else "idle"


def _thread_failed(inp: ThreadFailed) -> Event:
    """The ``thread_failed`` event: a helper thread died, and when it starts again."""
    data: dict[str, Any] = {
        "thread": inp.thread,
        "error": inp.error,
        "failures": inp.failures,
        "restart_in_s": None if inp.restart_in_s is None else round(inp.restart_in_s, 3),
    }
    return Event(EventType.THREAD_FAILED, inp.t, data)


#: The answer to a ``silence`` with no alarm sounding (docs/MQTT.md).
NOTHING_TO_SILENCE = (
    "nothing to silence: no alarm is sounding (a silence mutes only the alarm sounding when it "
    "is received; a later alarm sounds)"
)


def _result(cmd: Command, ok: bool, error: str | None = None, **extra: Any) -> Event:
    """The ``command_result`` event answering ``cmd`` (``error`` says why it was refused)."""
    data: dict[str, Any] = {"command": cmd.name, "ok": ok}
    if cmd.request_id is not None:
        data["request_id"] = cmd.request_id
    if error is not None:
        data["error"] = error
    data.update(extra)
    return Event(EventType.COMMAND_RESULT, cmd.t, data)
