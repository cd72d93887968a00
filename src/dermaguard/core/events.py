"""What goes into the core and what comes out of it.

Inputs carry their own monotonic timestamp ``t`` (seconds); the core never reads a clock.
Effects are plain data the shell applies in order: indicators first, so an alarm is shown before
anything slow (disk, network) happens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Literal, get_args

from dermaguard.core.calibration import Calibration

#: The pressure zones, from no contact up (docs/CARE.md gives their bounds).
Zone = Literal["none", "light", "ok", "high", "over"]
#: The same zones as values, in order: derived from :data:`Zone`, so there is one list.
ZONES: tuple[Zone, ...] = get_args(Zone)
#: The zones in which the roller touches skin: every zone but ``none``.
CONTACT_ZONES: tuple[Zone, ...] = tuple(zone for zone in ZONES if zone != "none")


class EventType(StrEnum):
    """Every event the device records and publishes: the one list of names.

    A ``StrEnum``, so a member is its wire name (``EventType.OVER_PRESSURE == "over_pressure"``)
    wherever a string is stored, published or compared. ``mqtt/schemas/event.json`` lists the
    same names; a test keeps the two equal (docs/MQTT.md, "Events").
    """

    DAEMON_STARTED = "daemon_started"
    DAEMON_STOPPING = "daemon_stopping"
    SESSION_STARTED = "session_started"
    SESSION_ENDED = "session_ended"
    OVER_PRESSURE = "over_pressure"
    OVER_PRESSURE_CLEARED = "over_pressure_cleared"
    UNSTERILE_USE = "unsterile_use"
    TOO_SOON = "too_soon"
    REST_UNKNOWN = "rest_unknown"
    ROLLER_REPLACE_DUE = "roller_replace_due"
    STERILIZATION_STARTED = "sterilization_started"
    STERILIZATION_COMPLETED = "sterilization_completed"
    STERILIZATION_ABORTED = "sterilization_aborted"
    SENSOR_FAULT = "sensor_fault"
    SENSOR_RECOVERED = "sensor_recovered"
    CASE_FAULT = "case_fault"
    CASE_FAULT_CLEARED = "case_fault_cleared"
    CALIBRATION_CHANGED = "calibration_changed"
    COMMAND_RESULT = "command_result"
    NEW_ROLLER = "new_roller"
    THREAD_FAILED = "thread_failed"
    CLOCK_SYNC = "clock_sync"


class CommandName(StrEnum):
    """Every command a device accepts on ``<base>/cmd/<name>``: the one list of names.

    The engine dispatches on them; the MQTT topics, the command parser and Home Assistant's
    buttons derive theirs from this list, and ``mqtt/schemas/command.json`` has one payload
    shape for each (a test keeps them equal; docs/MQTT.md, "Commands").
    """

    TARE = "tare"
    STERILIZE = "sterilize"
    SILENCE = "silence"
    NEW_ROLLER = "new_roller"
    PING = "ping"


class Priority(IntEnum):
    """Alarm priorities, after IEC 60601-1-8 (higher value wins)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForceRead:
    """A conversion read from the HX711: the signed 24-bit code."""

    t: float
    raw: int


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """No usable conversion within the time limit (``detail`` says what the shell saw).

    ``reason``: ``timeout`` (the chip gave nothing; the fault is ``not_ready``), ``bus_error``
    (the SPI transfers failed), ``engine_stalled`` (the engine fell so far behind that force
    samples were dropped from its queue) or ``wrong_rate`` (the board converts at another rate
    than ``hx711.rate_sps``; ``detail`` names its jumper and pin). Each is a sensor fault: the
    force is unknown.
    """

    t: float
    reason: Literal["timeout", "bus_error", "engine_stalled", "wrong_rate"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: lets timers (dwell, countdowns, idle timeouts) advance without samples."""

    t: float


@dataclass(frozen=True, slots=True)
class Command:
    """A remote command (MQTT ``cmd/<name>``), already parsed by the shell.

    ``error`` set means the shell refused it (unknown name, bad payload, rate limit): the core
    only answers it, so every command gets its ``command_result`` from one place.
    """

    t: float
    name: str
    request_id: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class UvOutput:
    """What the shell really drove on the UV-C output, reported at every change of the pin.

    The engine commands UV; only this says whether it shone. A cycle counts its UV time from
    these reports, never from its own command (docs/SAFETY.md, H17).
    """

    t: float
    on: bool


@dataclass(frozen=True, slots=True)
class UvRefused:
    """The shell refused to switch UV-C on: ``lid_open``, ``locked_out`` (the daemon stops),
    ``cap_latched`` (S4 tripped) or ``tripped`` (see :class:`UvLockedOut`)."""

    t: float
    reason: str


@dataclass(frozen=True, slots=True)
class UvLockedOut:
    """The shell switched UV-C off on its own and holds it off until the engine commands off:
    an exception in a thread (``reason`` ``thread_failed:<name>``)."""

    t: float
    reason: str


@dataclass(frozen=True, slots=True)
class ThreadFailed:
    """A helper thread of the shell died; ``restart_in_s`` is when it is started again
    (``None``: a one-shot thread, nothing to restart); ``failures`` counts its deaths."""

    t: float
    thread: str
    error: str
    restart_in_s: float | None
    failures: int


@dataclass(frozen=True, slots=True)
class ClockSync:
    """Whether the wall clock is synchronised to real time (NTP and the like), as the shell
    finds it: once at start, then at every change. A Pi has no real-time clock: until this says
    ``synced``, wall times are a stale guess (the last saved time, or 1970)."""

    t: float
    synced: bool


Input = ForceRead | ReadFailed | Tick | Command | ThreadFailed | ClockSync


# --- effects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """A domain event, as later stored and published (type names: docs/MQTT.md, "Events")."""

    type: EventType
    t: float
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmitEvent:
    event: Event


@dataclass(frozen=True, slots=True)
class ShowIndicators:
    """What the LED and buzzer should show now.

    ``alarm`` is the highest active alarm priority (``None``: no alarm), ``alarm_reason`` its
    cause; ``zone`` is the pressure zone shown when no alarm overrides it (``None``: unknown).
    """

    zone: Zone | None
    alarm: Priority | None
    alarm_reason: str | None
    silenced: bool = False
    """The buzzer is muted by the silence command; the LED still shows the alarm (S11)."""


@dataclass(frozen=True, slots=True)
class ForceSample:
    """One processed sample: force in newtons (``None`` when unknown, never 0) and its zone."""

    t: float
    force_n: float | None
    zone: Zone | None


@dataclass(frozen=True, slots=True)
class SetUv:
    """Drive the UV-C output. The shell applies ``on=False`` at once and may refuse ``True``."""

    on: bool


@dataclass(frozen=True, slots=True)
class CaseStatus:
    """The case as a person sees it: emitted on every change and as the countdown moves."""

    t: float
    state: str
    uv_on: bool
    remaining_s: float | None
    sterile: bool
    abort_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SaveCalibration:
    """A command changed the calibration (a tare): the shell writes it to its file."""

    calibration: Calibration


#: What the device is doing, as :class:`DeviceState` says it.
DeviceStateName = Literal["idle", "docked", "in_use", "sterilizing"]


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The device as a dashboard shows it, emitted whenever any of it but the force changes.

    ``force_n`` is the force at that moment (live force goes out as :class:`ForceSample`).
    Times are wall-clock (epoch seconds), for publishing.
    """

    t: float
    wall: float
    state: DeviceStateName
    zone: Zone | None
    force_n: float | None
    sterile: bool
    sterile_until_t: float | None
    sterile_until_wall: float | None
    uv_on: bool
    lid_closed: bool
    docked: bool
    case: str
    remaining_s: float | None
    session_no: int | None
    roller_id: int
    roller_uses: int
    fault: str | None
    alarm: str | None
    silenced: bool
    #: A latched fault of the UV-C case (``lid_mismatch``, ``uv_stuck_on``): UV stays off and
    #: the alarm sounds until it is cleared at the device (docs/SAFETY.md, H30, H31).
    case_fault: str | None = None
    #: Helper threads that died since the daemon started (each reported, restarted if it can
    #: be): a daemon that keeps losing one must not look healthy.
    thread_failures: int = 0
    #: Passes so far in the open session (``None``: no session), and the force of the pass
    #: running (or, between passes, of the last one): core/passes.py.
    passes: int | None = None
    pass_force_n: float | None = None
    #: A pass is running: with ``passes`` and a change of the pass's force by half a newton,
    #: what makes a new snapshot.
    pass_open: bool = False
    #: The device's own history and rest rule (S10), so a dashboard never judges from another
    #: history: sessions it has recorded, when the last one ended, the next allowed start.
    last_session_no: int = 0
    last_ended_wall: float | None = None
    next_allowed_wall: float | None = None
    #: How the open session started (None while none is open).
    session_sterile_at_start: bool | None = None
    session_too_soon: bool | None = None

    def key(self) -> tuple[object, ...]:
        """What counts as a change: everything but the times, the forces and the countdown
        (the countdown moves in steps: whole multiples of 30 s). The engine reads the same
        tuple from its sources without building a snapshot (``Engine._state_key_at``)."""
        remaining = None if self.remaining_s is None else int(self.remaining_s // 30)
        return (
            self.state,
            self.zone,
            self.sterile,
            self.sterile_until_t,
            self.uv_on,
            self.lid_closed,
            self.docked,
            self.case,
            remaining,
            self.session_no,
            self.roller_id,
            self.roller_uses,
            self.fault,
            self.alarm,
            self.silenced,
            self.thread_failures,
            self.passes,
            self.pass_open,
            # The running pass's force in half-newton steps: a pass's first readings move it
            # fast, a steady pass rarely; the exact value goes out with the snapshot.
            None if self.pass_force_n is None else round(self.pass_force_n * 2),
            self.last_session_no,
            self.last_ended_wall,
            self.next_allowed_wall,
            self.session_sterile_at_start,
            self.session_too_soon,
            self.case_fault,
        )


Effect = (
    EmitEvent | ShowIndicators | ForceSample | SetUv | CaseStatus | SaveCalibration | DeviceState
)
