"""The UV-C case: a pure state machine for the cycle and whether the roller counts as disinfected.

The names here say "sterile" and "sterilize" because MQTT, the status file and the history use
them; what they mean is disinfected (docs/CARE.md): UV-C does not make a roller sterile.

It is fed lid, dock and UV-sensor changes, sterilize requests, shell faults and ticks, each
stamped with its own time, and returns the events and the commanded UV output. It never reads a
clock or a pin, so every rule is tested with virtual time.

Safety rules held here (docs/ARCHITECTURE.md, "Safety rules"):

* S1: :attr:`CaseMachine.uv_on` is true only while a cycle runs, the lid is closed, the roller
  is docked and no fault is latched; anything else stops the cycle first.
* S4: UV on for the cap (cycle length, or dose / irradiance, plus the margin) aborts the cycle
  with ``cap_reached``, checked before anything else at every input.
* S5: with a UV sensor, no light within ``uv_confirm_s`` of UV on, or light lost during the
  cycle and not back within ``uv_confirm_s``, aborts it with ``uv_dark``; a cycle completes only
  while light is seen. Only a change reported *after* UV went on counts as light, so a sensor
  stuck "lit" fails the check. The grace after a loss matters: the lid's series interlock cuts
  the LED the instant the lid opens, so the sensor's "dark" may be queued before the lid's
  "open", and the abort must still say ``lid_opened``. Dark time adds no dose.
* S11: a sterilize request with the lid open is refused and UV stays off.
* H17 (docs/SAFETY.md): a cycle counts UV time only from the shell's reports of what it really
  drove on the output (``UvOutput``), never from its own command, and completes only once that
  time reaches the cycle's length. A refusal (``UvRefused``) or a lock-out (``UvLockedOut``)
  aborts it (``uv_refused``, ``uv_locked_out``, the shell's reason as ``detail``) and latches a
  fault; no report of the output driven within ``uv_confirm_s`` aborts it as ``uv_not_driven``.

Sterility: a completed cycle makes the roller sterile while it stays docked; once it leaves the
dock the window ``validity_after_undock_s`` starts, and docking it again does not stop that
clock (only a new cycle does). A session spends it (:meth:`CaseMachine.consume`). Opening the lid
over a docked roller does not: the design keys sterility to the dock, not the lid.

A latched fault (``uv_dark``, ``cap_reached``, ``uv_not_driven``, ``uv_refused``,
``uv_locked_out`` or one reported by the shell) refuses new cycles
until the lid is opened: opening the case is the acknowledgement that someone looked at it.

Case faults (docs/SAFETY.md, H30 and H31) are about the case itself, not a cycle, and raise an
alarm (``case_fault``) until cleared at the device:

* ``lid_mismatch``: the lid has two software channels, a reed switch worked by a magnet in the
  lid (``LidChanged``) and the spare normally-closed contact of the microswitch S1b whose other
  contact carries the UV-C supply (``LidContactChanged``). The lid counts as closed only while
  both say so; when they disagree for ``lid_mismatch_s`` (longer than a lid closing slowly takes
  between the two), the fault latches. It clears only once both read the lid *open* together:
  the lid was opened and the microswitch seen to release, so a finger on the lever, a jammed
  lever or a welded S1b (its NC contact can no longer close) keeps it latched.
* ``uv_stuck_on``: with a UV sensor, light seen for ``uv_confirm_s`` with the lid closed and UV
  commanded off (a shorted MOSFET). Lid open is not a fault (daylight may reach the sensor). It
  clears only with a new process: a restart at the device, after ``check-hardware``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dermaguard.core.events import Event, EventType, Tick, UvLockedOut, UvOutput, UvRefused

CaseState = Literal["open", "ready", "sterilizing", "sterile", "aborted"]
CycleMode = Literal["time", "dose"]

# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LidChanged:
    """The lid switch changed (``closed``: the lid is shut)."""

    t: float
    closed: bool


@dataclass(frozen=True, slots=True)
class LidContactChanged:
    """The lid microswitch's normally-closed contact, the lid's second channel, changed
    (``shut``: the contact is open, the lid holds the lever down)."""

    t: float
    shut: bool


@dataclass(frozen=True, slots=True)
class DockChanged:
    """The dock switch changed (``docked``: the roller sits in its holder)."""

    t: float
    docked: bool


@dataclass(frozen=True, slots=True)
class UvSensed:
    """The UV sensor changed (``lit``: it sees UV-C light)."""

    t: float
    lit: bool


@dataclass(frozen=True, slots=True)
class SterilizeRequested:
    """A command asks for a cycle; ``request_id`` is echoed by the engine's answer."""

    t: float
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class UvFault:
    """The shell found a UV fault (e.g. its own on-time guard tripped: ``cap_reached``)."""

    t: float
    reason: str


CaseSignal = (
    LidChanged
    | LidContactChanged
    | DockChanged
    | UvSensed
    | UvFault
    | UvOutput
    | UvRefused
    | UvLockedOut
)
"""What the hardware shell queues for the case."""

CaseInput = CaseSignal | SterilizeRequested | Tick


# --- parameters and results ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseParams:
    """Everything the case needs, taken from the config (times in seconds).

    No defaults for config values: the config schema is the one place they live
    (``dermaguard.config.params`` builds these from a config or its defaults).
    """

    cycle_s: float
    auto_start: bool
    validity_after_undock_s: float
    uv_sensor: bool
    uv_confirm_s: float
    irradiance_mw_cm2: float | None
    dose_mj_cm2: float
    #: The lid's second channel (the microswitch's NC contact) is wired.
    lid_contact: bool
    #: How long the two lid channels may disagree before it is a fault.
    lid_mismatch_s: float
    #: Not a config key: S4's margin over the cycle is a safety constant (docs/ARCHITECTURE.md,
    #: "Safety rules"), so no setting can widen it; only tests vary it.
    cap_margin: float = 0.10

    def __post_init__(self) -> None:
        if not self.cycle_s > 0:
            raise ValueError(f"cycle_s must be > 0, got {self.cycle_s}")
        if not self.validity_after_undock_s > 0:
            raise ValueError("validity_after_undock_s must be > 0")
        if not self.uv_confirm_s > 0:
            raise ValueError("uv_confirm_s must be > 0")
        if not self.lid_mismatch_s > 0:
            raise ValueError("lid_mismatch_s must be > 0")
        if not self.cap_margin >= 0:
            raise ValueError("cap_margin must be >= 0")
        for name in ("irradiance_mw_cm2", "dose_mj_cm2"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")

    @property
    def dose_mode(self) -> bool:
        """Dose mode, defined here only: the cycle ends on a measured dose, which needs the
        irradiance it is reached at and the sensor to know when UV really shines. (A config
        with an irradiance and no sensor is refused, so a config's irradiance means this.)"""
        return self.uv_sensor and self.irradiance_mw_cm2 is not None

    @property
    def length_s(self) -> float:
        """The nominal UV time of a cycle (for a dose: the lit time that delivers it)."""
        if self.dose_mode:
            assert self.irradiance_mw_cm2 is not None
            return self.dose_mj_cm2 / self.irradiance_mw_cm2
        return self.cycle_s

    @property
    def cap_s(self) -> float:
        """S4: the longest UV may stay on in one go, whatever the machine believes."""
        return self.length_s * (1.0 + self.cap_margin)


@dataclass(slots=True)
class CaseUpdate:
    """The outcome of one input: events, the UV command, and why a request was refused."""

    events: list[Event] = field(default_factory=list)
    uv_on: bool = False
    refused: str | None = None


@dataclass(slots=True)
class _Cycle:
    cycle_id: int
    started: float
    trigger: str
    request_id: str | None
    dark_since: float | None  # light expected but not seen since (None: lit, or no sensor)
    lit_since: float | None = None  # seen lit since (None: dark)
    lit_s: float = 0.0  # lit time before lit_since
    # The UV output as the shell reported driving it (UvOutput): the cycle's evidence.
    off_since: float | None = None  # commanded on, not seen driven since (None: driven)
    on_since: float | None = None  # seen driven since (None: off)
    on_s: float = 0.0  # driven time before on_since


# --- the machine --------------------------------------------------------------------------


class CaseMachine:
    """Holds the case's switches, the running cycle and the roller's sterility."""

    def __init__(
        self,
        params: CaseParams,
        *,
        lid_closed: bool = False,
        docked: bool = False,
        uv_lit: bool = False,
        last_cycle_id: int = 0,
    ) -> None:
        """Start from known switch levels; ``last_cycle_id`` continues a stored numbering."""
        self.params = params
        self.lid_reed = lid_closed  # the reed switch's channel (``LidChanged``)
        # The microswitch's NC contact (``LidContactChanged``); None: not reported yet.
        self.lid_contact: bool | None = lid_closed if params.lid_contact else None
        self.lid_closed = lid_closed  # both channels say closed
        self.docked = docked
        self.uv_lit = uv_lit
        self.uv_driven = False  # the UV output as the shell last reported it
        self.fault: str | None = None
        self.abort_reason: str | None = None
        self.now: float | None = None
        self._last_id = last_cycle_id
        self._cycle: _Cycle | None = None
        self._sterile_id: int | None = None
        self._sterile_deadline: float | None = None  # set when the roller leaves the dock
        self._ended_now = False  # a cycle ended while handling the current input
        self._case_faults: dict[str, float] = {}  # latched case faults, by reason
        self._mismatch_since: float | None = None  # the lid channels disagree since
        self._stray_since: float | None = None  # light with the lid closed and UV off since

    # -- queries --------------------------------------------------------------------------

    @property
    def uv_on(self) -> bool:
        """S1: the commanded UV output, true only when every condition holds."""
        return (
            self._cycle is not None
            and self.lid_closed
            and self.docked
            and self.fault is None
            and not self._case_faults
        )

    @property
    def case_fault(self) -> str | None:
        """The first latched case fault (``lid_mismatch``, ``uv_stuck_on``); ``None``: none."""
        return next(iter(self._case_faults), None)

    @property
    def state(self) -> CaseState:
        if self._cycle is not None:
            return "sterilizing"
        if self.abort_reason is not None:
            return "aborted"
        if self._sterile_id is not None:
            return "sterile"
        if self.lid_closed and self.docked:
            return "ready"
        return "open"

    @property
    def cycle_id(self) -> int | None:
        """The running cycle's id (``None`` when no cycle runs)."""
        return self._cycle.cycle_id if self._cycle is not None else None

    @property
    def last_cycle_id(self) -> int:
        return self._last_id

    def remaining_s(self, t: float) -> float | None:
        """UV time left in the running cycle (with a sensor, what is left of the shorter of the
        driven and the lit time, as ``_done`` counts); ``None`` when idle."""
        cycle = self._cycle
        if cycle is None:
            return None
        counted = self._on_s(cycle, t)
        if self.params.uv_sensor:
            counted = min(counted, self._lit_s(cycle, t))
        return max(0.0, self.params.length_s - counted)

    def sterility(self, t: float) -> tuple[bool, int | None]:
        """Whether the roller counts as sterile at ``t``, and by which cycle."""
        if self._sterile_id is None:
            return False, None
        if self._sterile_deadline is not None and t >= self._sterile_deadline:
            return False, None
        return True, self._sterile_id

    def sterile_until(self, t: float) -> float | None:
        """When sterility expires; ``None`` when not sterile or while no deadline runs (docked
        since the cycle: it stays valid for as long as the roller stays in)."""
        valid, _ = self.sterility(t)
        return self._sterile_deadline if valid else None

    def consume(self, t: float) -> int | None:
        """A session uses the roller: its sterility is spent. Returns the cycle id it had."""
        valid, cycle_id = self.sterility(t)
        self._sterile_id = None
        self._sterile_deadline = None
        return cycle_id if valid else None

    # -- inputs ---------------------------------------------------------------------------

    def handle(self, inp: CaseInput) -> CaseUpdate:
        """Advance to ``inp.t`` (timers first), then apply the input."""
        out = CaseUpdate()
        self._ended_now = False
        t = inp.t if self.now is None else max(inp.t, self.now)
        self.now = t
        self._advance(t, out)
        self._apply(t, inp, out)
        self._advance(t, out)  # the input may have made a due completion possible
        self._watch_stray_light(t)
        out.uv_on = self.uv_on
        return out

    def _apply(self, t: float, inp: CaseInput, out: CaseUpdate) -> None:
        if isinstance(inp, LidChanged):
            self.lid_reed = inp.closed
            self._on_lid_channels(t, out)
        elif isinstance(inp, LidContactChanged):
            if self.params.lid_contact:
                self.lid_contact = inp.shut
                self._on_lid_channels(t, out)
        elif isinstance(inp, DockChanged):
            self._on_dock(t, inp.docked, out)
        elif isinstance(inp, UvSensed):
            self._on_sensed(t, inp.lit)
        elif isinstance(inp, SterilizeRequested):
            out.refused = self._on_request(t, inp.request_id, out)
        elif isinstance(inp, UvFault):
            self.fault = inp.reason
            self._abort(t, f"fault:{inp.reason}", out)
        elif isinstance(inp, UvOutput):
            self._on_output(t, inp.on)
        elif isinstance(inp, UvRefused):
            if inp.reason == "lid_open":
                # The lid-open edge is on its way: this is that abort, no fault of the output.
                self._abort(t, "lid_opened", out)
            else:
                self._output_fault(t, "uv_refused", inp.reason, out)
        elif isinstance(inp, UvLockedOut):
            self._output_fault(t, "uv_locked_out", inp.reason, out)
        # A Tick only advances time.

    def _advance(self, t: float, out: CaseUpdate) -> None:
        self._case_fault_timers(t, out)
        cycle = self._cycle
        if cycle is not None:
            on_s = t - cycle.started
            if on_s >= self.params.cap_s:  # S4, whatever else holds
                self.fault = "cap_reached"
                self._abort(t, "cap_reached", out)
            elif cycle.off_since is not None and t - cycle.off_since >= self.params.uv_confirm_s:
                # Commanded on, but the shell never said it drove the output (or said it went
                # off): no evidence of UV, so no cycle (docs/SAFETY.md, H17).
                self.fault = "uv_not_driven"
                self._abort(t, "uv_not_driven", out)
            elif cycle.dark_since is not None and t - cycle.dark_since >= self.params.uv_confirm_s:
                self.fault = "uv_dark"  # S5
                self._abort(t, "uv_dark", out)
            elif self._done(cycle, t):
                self._complete(t, cycle, out)
        if self._sterile_deadline is not None and t >= self._sterile_deadline:
            self._sterile_id = None
            self._sterile_deadline = None

    def _done(self, cycle: _Cycle, t: float) -> bool:
        """Complete only on evidence: the output reported driven for the cycle's UV time and,
        with a sensor, lit now and lit for that time too (a LED that goes dark for less than
        the grace, again and again, must not have its dark time counted as UV)."""
        if cycle.on_since is None:
            return False
        if self.params.uv_sensor and cycle.lit_since is None:
            return False
        if self._on_s(cycle, t) < self.params.length_s:
            return False
        return not self.params.uv_sensor or self._lit_s(cycle, t) >= self.params.length_s

    @staticmethod
    def _on_s(cycle: _Cycle, t: float) -> float:
        extra = t - cycle.on_since if cycle.on_since is not None else 0.0
        return cycle.on_s + extra

    @staticmethod
    def _lit_s(cycle: _Cycle, t: float) -> float:
        extra = t - cycle.lit_since if cycle.lit_since is not None else 0.0
        return cycle.lit_s + extra

    def _on_lid_channels(self, t: float, out: CaseUpdate) -> None:
        """The lid is closed only while both channels say so; a disagreement starts the
        mismatch timer, and both reading open together clears a latched mismatch."""
        contact = self.lid_contact if self.params.lid_contact else self.lid_reed
        if contact == self.lid_reed:
            self._mismatch_since = None
            if not self.lid_reed and "lid_mismatch" in self._case_faults:
                self._clear_case_fault(t, "lid_mismatch", out)
        elif self._mismatch_since is None:
            self._mismatch_since = t
        self._on_lid(t, self.lid_reed and contact is True, out)

    def _case_fault_timers(self, t: float, out: CaseUpdate) -> None:
        since = self._mismatch_since
        if since is not None and t - since >= self.params.lid_mismatch_s:
            self._mismatch_since = None
            self._latch_case_fault(
                t,
                "lid_mismatch",
                out,
                lid_reed="closed" if self.lid_reed else "open",
                lid_contact="closed" if self.lid_contact else "open",
            )
        since = self._stray_since
        if since is not None and t - since >= self.params.uv_confirm_s:
            self._stray_since = None
            self._latch_case_fault(t, "uv_stuck_on", out)

    def _watch_stray_light(self, t: float) -> None:
        """Light with the lid closed and UV commanded off: a stuck-on LED, once it lasts
        ``uv_confirm_s`` (the sensor's "dark" after a commanded off is on its way)."""
        stray = self.params.uv_sensor and self.uv_lit and self.lid_closed and not self.uv_on
        if not stray or "uv_stuck_on" in self._case_faults:
            self._stray_since = None
        elif self._stray_since is None:
            self._stray_since = t

    def _latch_case_fault(self, t: float, reason: str, out: CaseUpdate, **detail: str) -> None:
        if reason in self._case_faults:
            return
        self._case_faults[reason] = t
        self._abort(t, reason, out)
        out.events.append(Event(EventType.CASE_FAULT, t, {"reason": reason, **detail}))

    def _clear_case_fault(self, t: float, reason: str, out: CaseUpdate) -> None:
        latched = self._case_faults.pop(reason)
        data = {"reason": reason, "after_s": round(t - latched, 3)}
        out.events.append(Event(EventType.CASE_FAULT_CLEARED, t, data))

    def _on_lid(self, t: float, closed: bool, out: CaseUpdate) -> None:
        if closed == self.lid_closed:
            return
        self.lid_closed = closed
        if not closed:
            self._abort(t, "lid_opened", out)
            self.fault = None  # someone opened the case: the next cycle is a new attempt
            return
        self.abort_reason = None
        if (
            self.docked
            and self.params.auto_start
            and self.fault is None
            and not self._case_faults
            and not self._ended_now
        ):
            self._start(t, "auto", None, out)

    def _on_dock(self, t: float, docked: bool, out: CaseUpdate) -> None:
        if docked == self.docked:
            return
        self.docked = docked
        if docked:
            return  # only closing the lid (or a request) starts a cycle
        self._abort(t, "roller_removed", out)
        self.abort_reason = None  # that roller has left; the case has nothing to report
        if self._sterile_id is not None and self._sterile_deadline is None:
            self._sterile_deadline = t + self.params.validity_after_undock_s

    def _on_sensed(self, t: float, lit: bool) -> None:
        self.uv_lit = lit
        cycle = self._cycle
        if cycle is None or not self.params.uv_sensor:
            return
        if lit and cycle.lit_since is None:
            cycle.lit_since, cycle.dark_since = t, None
        elif not lit and cycle.lit_since is not None:
            cycle.lit_s += t - cycle.lit_since
            cycle.lit_since, cycle.dark_since = None, t

    def _on_output(self, t: float, on: bool) -> None:
        self.uv_driven = on
        cycle = self._cycle
        if cycle is None:
            return
        if on and cycle.on_since is None:
            cycle.on_since, cycle.off_since = t, None
        elif not on and cycle.on_since is not None:
            cycle.on_s += t - cycle.on_since
            cycle.on_since, cycle.off_since = None, t

    def _output_fault(self, t: float, reason: str, detail: str, out: CaseUpdate) -> None:
        """The shell could not, or would not, drive UV for the running cycle: it ends here, not
        sterile, with a fault latched until the lid is opened (like S4's and S5's)."""
        if self._cycle is None:
            return  # no cycle relied on the output
        self.fault = reason
        self._abort(t, reason, out, detail=detail)

    def _on_request(self, t: float, request_id: str | None, out: CaseUpdate) -> str | None:
        if self._cycle is not None or self._ended_now:
            # A cycle that ended on this very input would otherwise run straight into the next:
            # UV on without a break, longer than one cap (S4), and the shell's guard would
            # count both as one on-period.
            return "already_sterilizing"
        if not self.lid_closed:
            return "lid_open"
        if not self.docked:
            return "roller_not_docked"
        if self.fault is not None:
            return f"fault:{self.fault}"
        if self._case_faults:
            return f"fault:{self.case_fault}"
        self._start(t, "command", request_id, out)
        return None

    def stop(self, t: float) -> CaseUpdate:
        """The daemon stops: a running cycle is aborted (``daemon_stopped``), never left looking
        as if it ran on; the roller it was sterilizing is not sterile."""
        out = CaseUpdate()
        self.now = t if self.now is None else max(t, self.now)
        self._abort(self.now, "daemon_stopped", out)
        out.uv_on = self.uv_on
        return out

    # -- transitions ----------------------------------------------------------------------

    def _start(self, t: float, trigger: str, request_id: str | None, out: CaseUpdate) -> None:
        self._last_id += 1
        self.abort_reason = None
        p = self.params
        self._cycle = _Cycle(
            self._last_id,
            t,
            trigger,
            request_id,
            dark_since=t if p.uv_sensor else None,
            off_since=t,  # UV time counts from the shell's report that it drove the output
        )
        data: dict[str, object] = {
            "cycle_id": self._last_id,
            "mode": "dose" if p.dose_mode else "time",
            "length_s": round(p.length_s, 3),
            "cap_s": round(p.cap_s, 3),
            "trigger": trigger,
        }
        if p.dose_mode:
            data["dose_target_mj_cm2"] = p.dose_mj_cm2
        if request_id is not None:
            data["request_id"] = request_id
        out.events.append(Event(EventType.STERILIZATION_STARTED, t, data))

    def _complete(self, t: float, cycle: _Cycle, out: CaseUpdate) -> None:
        self._cycle = None
        self._ended_now = True
        self._sterile_id = cycle.cycle_id
        self._sterile_deadline = None
        data: dict[str, object] = {
            "cycle_id": cycle.cycle_id,
            "duration_s": round(t - cycle.started, 3),
            "uv_on_s": round(self._on_s(cycle, t), 3),
        }
        dose = self._dose(cycle, t)
        if dose is not None:
            data["dose_mj_cm2"] = round(dose, 3)
        out.events.append(Event(EventType.STERILIZATION_COMPLETED, t, data))

    def _dose(self, cycle: _Cycle, t: float) -> float | None:
        irradiance = self.params.irradiance_mw_cm2
        if irradiance is None or not self.params.uv_sensor:
            return None
        return irradiance * self._lit_s(cycle, t)

    def _abort(self, t: float, reason: str, out: CaseUpdate, *, detail: str | None = None) -> None:
        cycle = self._cycle
        if cycle is None:
            return
        self._cycle = None
        self._ended_now = True
        self.abort_reason = reason
        data: dict[str, object] = {
            "cycle_id": cycle.cycle_id,
            "reason": reason,
            "after_s": round(t - cycle.started, 3),
        }
        if detail is not None:
            data["detail"] = detail
        dose = self._dose(cycle, t)
        if dose is not None:
            data["dose_mj_cm2"] = round(dose, 3)
        out.events.append(Event(EventType.STERILIZATION_ABORTED, t, data))
