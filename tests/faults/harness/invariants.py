"""The invariants, judged over what one run recorded: pins, applied events, reads, pings, the
history and what a subscriber received. Each returns the violations it found, in words."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .catalogue import CYCLE_S, FATAL_KINDS
from .inproc import CALIBRATION, WATCHDOG_S, RunResult
from .record import Applied, PinChange

#: S2: UV off within 50 ms (real time) of the lid opening, through software alone.
LID_TO_UV_OFF_S = 0.050
#: The engine may be this far (real seconds) behind an alarm that is due before the watchdog
#: must have stopped: its 0.5 s bound on the last input handled, one ping interval, and the
#: watchdog timeout itself.
WATCHDOG_GRACE_S = 0.5 + 0.2 + 0.4
#: A completed cycle's UV time may fall short of the cycle by this (one sample period of
#: timestamping, in virtual seconds).
UV_TIME_SLACK_S = 2 / 80
#: A stuck-on LED's fault may come this long (virtual) after its grace: the case machine
#: looks at each input, a sample every 1/80 s or a tick every 0.1 s.
STRAY_SLACK_S = 0.1 + 2 / 80


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str


def _last_level(changes: list[PinChange], upto: Callable[[PinChange], bool]) -> bool | None:
    """The level of the last change for which ``upto`` holds (changes are in order)."""
    level = None
    for c in changes:
        if not upto(c):
            break
        level = c.level
    return level


def _level_at(changes: list[PinChange], seq: int) -> bool | None:
    return _last_level(changes, lambda c: c.seq <= seq)


def _cycle_running(applied: list[Applied], starts: list[Applied], seq: int) -> bool:
    """A cycle runs at ``seq``: the last start before it is not over, or the effects being
    applied at ``seq`` start one (UV is switched before the event that says so)."""
    before = [a for a in applied if a.seq < seq]
    for a in reversed(before):
        if a.event.type in ("sterilization_completed", "sterilization_aborted"):
            break
        if a.event.type == "sterilization_started":
            return True
    after = [a for a in applied if a.seq > seq]
    begun = next((a for a in after if a.event.type == "sterilization_started"), None)
    if begun is None:
        return False
    return all(a.event.t == begun.event.t for a in after if a.seq < begun.seq)


def uv_interlocks(r: RunResult) -> list[Violation]:
    """UV pin high ⇒ lid closed, roller docked, a cycle running and no fault (S1/S11), but for
    S2's lid-to-UV-off delay after the lid opens."""
    c = r.config
    uv_pin, lid_pin, dock_pin = c.pins.uv_led, c.pins.lid, c.pins.dock
    uv_on_level = c.case.uv_active_high
    lid_closed_level = not c.case.lid_active_low
    dock_in_level = not c.case.dock_active_low
    pins = r.recording.pins
    out: list[Violation] = []
    # Cycle windows, in the order of the one timeline: from the UV-on that starts a cycle's
    # effects to the event that ends it (its SetUv(False) is applied before that event).
    starts = [a for a in r.recording.applied if a.event.type == "sterilization_started"]
    ends = [
        a
        for a in r.recording.applied
        if a.event.type in ("sterilization_completed", "sterilization_aborted")
    ]
    lid = dock = uv = None
    for p in pins:
        if p.pin == lid_pin:
            lid = p.level == lid_closed_level
        elif p.pin == dock_pin:
            dock = p.level == dock_in_level
        elif p.pin == uv_pin:
            uv = p.level == uv_on_level
        if not uv:
            continue
        # UV switched on: a cycle must start with this very effect list, and none be over.
        if p.pin == uv_pin and not _cycle_running(r.recording.applied, starts, p.seq):
            out.append(Violation("uv_interlocks", f"UV on at t={p.t:.3f} with no cycle starting"))
        if lid is False and p.pin == uv_pin:
            out.append(
                Violation("uv_interlocks", f"UV switched on with the lid open at t={p.t:.3f}")
            )
        elif lid is False and p.pin == lid_pin:
            off = next((q for q in pins if q.seq > p.seq and q.pin == uv_pin), None)
            delay = None if off is None else off.real - p.real
            if delay is None or delay > LID_TO_UV_OFF_S:
                took = "never" if delay is None else f"{delay * 1000:.0f} ms"
                out.append(
                    Violation("uv_interlocks", f"lid opened at t={p.t:.3f}, UV off {took} after")
                )
        if dock is False:
            out.append(
                Violation("uv_interlocks", f"UV on without the roller docked at t={p.t:.3f}")
            )
    # Still on after a cycle ended (the end event is applied after the UV-off effect).
    for e in ends:
        level = _level_at([p for p in pins if p.pin == uv_pin], e.seq)
        if level == uv_on_level:
            out.append(
                Violation("uv_interlocks", f"UV still on after {e.event.type} at t={e.t:.3f}")
            )
    return out


def completed_means_uv(r: RunResult) -> list[Violation]:
    """A cycle reported completed ⇒ the UV pin was high for at least the cycle time in it."""
    c = r.config
    uv = [p for p in r.recording.pins if p.pin == c.pins.uv_led]
    on = c.case.uv_active_high
    out = []
    started: Applied | None = None
    for a in r.recording.applied:
        if a.event.type == "sterilization_started":
            started = a
        elif a.event.type == "sterilization_completed" and started is not None:
            lit = 0.0
            since: float | None = None
            for p in uv:
                if p.seq > a.seq:
                    break
                if p.level == on and since is None:
                    since = max(p.t, started.event.t)
                elif p.level != on and since is not None:
                    lit += max(0.0, p.t - since)  # 0 for a stretch before this cycle
                    since = None
            if since is not None:
                lit += max(0.0, a.t - since)
            if lit < CYCLE_S - UV_TIME_SLACK_S:
                out.append(
                    Violation(
                        "completed_means_uv",
                        f"cycle completed at t={a.event.t:.3f} "
                        f"with UV on {lit:.3f} s of {CYCLE_S} s",
                    )
                )
            started = None
    return out


def _alarm_active(applied: list[Applied], t0: float, t1: float) -> bool:
    """Was the over-pressure alarm on at some time in [t0, t1] (event times)?"""
    state = False
    for a in sorted(applied, key=lambda a: a.event.t):
        if a.event.t > t1:
            break
        if a.event.type == "over_pressure":
            state = True
            if a.event.t >= t0:
                return True
        elif a.event.type == "over_pressure_cleared":
            state = False
    return state


def _starved_at(r: RunResult, due: float, until: float) -> float | None:
    """When systemd's watchdog would expire after ``due``: the end of the first stretch of
    ``WATCHDOG_S`` without WATCHDOG=1 from ``due`` to ``until`` or STOPPING=1 (which ends the
    watchdog), real times; ``None`` if there is none. Counted from ``due``, not from the last
    ping before it as systemd does: later than systemd would, so the checks err strict."""
    end = min([until, *r.recording.stopping])
    marks = [due, *(p for p in r.recording.pings if due < p < end), end]
    for x, y in itertools.pairwise(marks):
        if y - x >= WATCHDOG_S:
            return x + WATCHDOG_S
    return None


def _watchdog_starved(r: RunResult, due: float, until: float) -> bool:
    """Did systemd see a stretch of the watchdog timeout without WATCHDOG=1 between ``due``
    and ``until``?"""
    return _starved_at(r, due, until) is not None


def _restarted_in_time(r: RunResult, due: float) -> bool:
    """Would systemd have restarted the daemon soon enough after an alarm due at ``due`` (a
    real time) that never came? A run that kept going needs the watchdog to have starved; a
    run whose alarm path failed must have been restarted (the watchdog expired, or the process
    exited) within ``WATCHDOG_GRACE_S`` of ``due``, as a stalled engine would be: a failure
    long after a missed alarm excuses nothing, and a failed daemon that says STOPPING=1 and
    lingers holds systemd off."""
    reads = r.recording.reads
    if r.failed_at is None or r.exited is None:
        return _watchdog_starved(r, due, reads[-1].real)
    return _restart_at(r, due, r.exited) <= due + WATCHDOG_GRACE_S


def _restart_at(r: RunResult, due: float, exited: float) -> float:
    """When systemd restarts the daemon: its watchdog's expiry after ``due``, else the exit."""
    starved = _starved_at(r, due, exited)
    return exited if starved is None else starved


def over_pressure_alarm(r: RunResult) -> list[Violation]:
    """Force ≥ the limit for 3 periods while the sensor reads ⇒ the alarm within 2 periods;
    the watchdog stops being fed while that cannot hold (the engine too far behind, or the
    samples never reaching it)."""
    c = r.config
    limit = c.pressure.zones.over_n
    period = 1.0 / c.hx711.rate_sps
    reads = r.recording.reads
    applied = r.recording.events()
    horizon = min(
        [a.event.t for a in applied if a.event.type == "daemon_stopping"]
        + ([r.failed_at] if r.failed_at is not None else [])
        + [reads[-1].t - 3 * period if reads else 0.0]
    )
    out: list[Violation] = []
    run = 0
    for i, rd in enumerate(reads):
        force = (rd.raw - CALIBRATION.offset) * CALIBRATION.scale_n_per_count
        consecutive = i > 0 and rd.t - reads[i - 1].t < 1.5 * period
        run = run + 1 if force >= limit and (consecutive or run == 0) else int(force >= limit)
        if run < 3 or rd.t + 2 * period > horizon:
            continue
        deadline = rd.t + 2 * period + 1e-6
        if not _alarm_active(applied, rd.t, deadline):
            if not _restarted_in_time(r, rd.real):
                out.append(
                    Violation(
                        "over_pressure_alarm",
                        f"{force:.1f} N for {run} periods to t={rd.t:.3f}, no over-pressure "
                        "alarm, and neither the watchdog nor the daemon's exit ended it in time",
                    )
                )
                return out  # one per run is enough
            continue
        given = [
            a.real for a in applied if a.event.type == "over_pressure" and a.event.t <= deadline
        ]
        late = given[-1] - rd.real if given else 0.0
        if run == 3 and late > WATCHDOG_GRACE_S and not _watchdog_starved(r, rd.real, given[-1]):
            out.append(
                Violation(
                    "over_pressure_alarm",
                    f"alarm due at t={rd.t:.3f} applied {late:.2f} s late while the watchdog "
                    "kept being fed",
                )
            )
            return out
    return out


def _light_on(r: RunResult) -> list[tuple[float, float, float, float]]:
    """The stretches UV-C really shone: (virtual on, virtual off, real on, real off); one still
    on at the end runs to the last thing recorded."""
    rec = r.recording
    end_t = max([rec.light[-1].t if rec.light else 0.0, *(a.t for a in rec.applied)])
    end_real = max([rec.light[-1].real if rec.light else 0.0, *(a.real for a in rec.applied)])
    out = []
    since: tuple[float, float] | None = None
    for change in rec.light:
        if change.on and since is None:
            since = (change.t, change.real)
        elif not change.on and since is not None:
            out.append((since[0], change.t, since[1], change.real))
            since = None
    if since is not None:
        out.append((since[0], end_t, since[1], end_real))
    return out


def case_light(r: RunResult) -> list[Violation]:
    """What the case's light really did, when its hardware may fail (a UV sensor is fitted):
    a cycle completed ⇒ UV-C shone for the cycle time within it (S5, H6); UV-C shone ⇒ the
    lid shut, but for S2's 50 ms after it opens (S1); UV-C shining with no cycle running (by
    the daemon's own stamps) and the lid shut for longer than the grace ⇒ a ``uv_stuck_on``
    case fault by then (H31), unless an engine stall left no input to stamp."""
    if r.config.pins.uv_sensor is None:
        return []
    c = r.config
    out: list[Violation] = []
    shone = _light_on(r)
    started: Applied | None = None
    for a in r.recording.applied:
        if a.event.type == "sterilization_started":
            started = a
        elif a.event.type == "sterilization_completed" and started is not None:
            lo, hi = started.event.t, a.event.t
            lit = sum(max(0.0, min(off, hi) - max(on, lo)) for on, off, _, _ in shone)
            if lit < CYCLE_S - UV_TIME_SLACK_S:
                out.append(
                    Violation(
                        "case_light",
                        f"cycle completed at t={hi:.3f} with UV-C shining {lit:.3f} s "
                        f"of {CYCLE_S} s",
                    )
                )
            started = None
    lid_level = not c.case.lid_active_low
    lid = [p for p in r.recording.pins if p.pin == c.pins.lid]
    for opened, shut in _open_stretches(lid, lid_level):
        for on, _, on_real, off_real in shone:
            if max(opened, on_real) >= min(shut, off_real):
                continue  # no light while open
            if on_real > opened or off_real - opened > LID_TO_UV_OFF_S:
                out.append(Violation("case_light", f"UV-C shone with the lid open at t={on:.3f}"))
    if "engine_stall" in r.schedule.kinds:
        return out  # a stalled engine stamps no input for a while: no deadline to judge by
    faults = [
        a.event.t
        for a in r.recording.applied
        if a.event.type == "case_fault" and a.event.data.get("reason") == "uv_stuck_on"
    ]
    for on, off in _stray(shone, _cycles(r.recording.applied), lid, lid_level):
        due = on + c.case.uv_confirm_s + STRAY_SLACK_S
        if off >= due and not any(t <= due for t in faults):
            out.append(
                Violation(
                    "case_light",
                    f"UV-C shone with the output off and the lid shut from t={on:.3f} to "
                    f"{off:.3f}, and no uv_stuck_on fault by t={due:.3f}",
                )
            )
    return out


def _open_stretches(lid: list[PinChange], shut_level: bool) -> list[tuple[float, float]]:
    """The stretches (real) the lid stood open; one still open runs on for ever."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for p in lid:
        if p.level != shut_level and since is None:
            since = p.real
        elif p.level == shut_level and since is not None:
            out.append((since, p.real))
            since = None
    if since is not None:
        out.append((since, float("inf")))
    return out


def _cycles(applied: list[Applied]) -> list[tuple[float, float]]:
    """The daemon's cycles (virtual, by its own stamps): UV-C commanded on from the start to
    the end; one still running runs on for ever."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for a in applied:
        if a.event.type == "sterilization_started":
            since = a.event.t
        elif a.event.type in ("sterilization_completed", "sterilization_aborted") and (
            since is not None
        ):
            out.append((since, a.event.t))
            since = None
    if since is not None:
        out.append((since, float("inf")))
    return out


def _stray(
    shone: list[tuple[float, float, float, float]],
    cycles: list[tuple[float, float]],
    lid: list[PinChange],
    lid_shut_level: bool,
) -> list[tuple[float, float]]:
    """The stretches (virtual) of light while no cycle runs and the lid is shut: what the
    daemon, judging by its own commands, must see as a LED stuck on."""
    marks = sorted(
        {t for on, off, _, _ in shone for t in (on, off)}
        | {t for start, end in cycles for t in (start, end) if t != float("inf")}
        | {p.t for p in lid}
    )
    out: list[tuple[float, float]] = []
    since: float | None = None
    for t in marks:
        lit = any(on <= t < off for on, off, _, _ in shone)
        running = any(start <= t < end for start, end in cycles)
        shut = _last_level(lid, lambda p, t=t: p.t <= t) == lid_shut_level
        stray = lit and not running and shut
        if stray and since is None:
            since = t
        elif not stray and since is not None:
            out.append((since, t))
            since = None
    if since is not None and shone:
        out.append((since, max(off for _, off, _, _ in shone)))
    return out


def exits(r: RunResult) -> list[Violation]:
    """The daemon never exits on a transient fault; when it exits, UV is off."""
    out = []
    c = r.config
    uv = [p for p in r.recording.pins if p.pin == c.pins.uv_led]
    if uv and uv[-1].level == c.case.uv_active_high:
        out.append(Violation("exits", "UV left on at exit"))
    if r.hung:
        out.append(Violation("exits", f"the daemon did not stop: {r.exit_reason}"))
    elif not r.finished and not (r.exit_code == 70 and any(r.landed.get(k) for k in FATAL_KINDS)):
        out.append(
            Violation("exits", f"exit {r.exit_code} on a transient fault: {r.exit_reason[:160]}")
        )
    return out


def received_are_stored_in(
    received: list[dict[str, Any]], stored: list[dict[str, Any]] | None, db_error: str | None = None
) -> list[Violation]:
    """Every event received is stored under its seq, and first arrivals come in seq order."""
    if not received:
        return []
    if stored is None:
        return [Violation("received_are_stored", f"history unreadable: {db_error}")]
    by_id = {e["id"]: e["seq"] for e in stored}
    seen: set[str] = set()
    last = 0
    for m in received:
        eid, seq = m.get("id"), m.get("seq")
        if eid in seen:
            continue
        seen.add(eid)
        if by_id.get(eid) != seq:
            return [Violation("received_are_stored", f"event {eid} seq {seq} not in the history")]
        if seq <= last:
            return [Violation("received_are_stored", f"seq {seq} received after {last}")]
        last = seq
    return []


def received_are_stored(r: RunResult) -> list[Violation]:
    """Every event a subscriber received is in the history after restart, with increasing seq."""
    return received_are_stored_in(r.received, r.stored_events, r.db_error)


def history(r: RunResult) -> list[Violation]:
    """No stored scale ≤ 0; no command acted on twice."""
    out = [Violation("no_bad_scale", f"stored scale {s} ≤ 0") for s in r.stored_scales if s <= 0]
    acted: dict[str, int] = {}
    for e in r.stored_events or ():
        d = e["data"]
        if e["type"] == "command_result" and d.get("ok") and d.get("request_id"):
            acted[d["request_id"]] = acted.get(d["request_id"], 0) + 1
    out += [
        Violation("command_once", f"command {rid} acted on {n} times")
        for rid, n in acted.items()
        if n > 1
    ]
    return out + sessions_unique(r.stored_events or [])


def tare_saved(r: RunResult) -> list[Violation]:
    """An accepted tare ends up in the calibration file, whatever happened to the thread that
    writes it (it is restarted with the tare still pending)."""
    tares = [
        a.event.data
        for a in r.recording.events()
        if a.event.type == "calibration_changed" and a.event.data.get("reason") == "tare"
    ]
    if not tares or r.exit_code == 70:
        return []
    want = float(tares[-1]["offset"])
    if r.saved_offset is None or abs(r.saved_offset - want) > 1e-6:
        held = r.saved_offset
        return [Violation("tare_saved", f"tare offset {want} accepted, the file holds {held}")]
    return []


def sessions_unique(events: list[dict[str, Any]]) -> list[Violation]:
    """One history, one writer: no session number started twice, nor ended twice (a session
    closed as interrupted while its daemon went on ends twice)."""
    out = []
    for etype, verb in (("session_started", "started"), ("session_ended", "ended")):
        numbers = [e["data"].get("session_no") for e in events if e["type"] == etype]
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        out += [Violation("history_consistent", f"session {n} {verb} twice") for n in twice]
    return out


INVARIANTS: tuple[Callable[[RunResult], list[Violation]], ...] = (
    uv_interlocks,
    completed_means_uv,
    case_light,
    over_pressure_alarm,
    exits,
    received_are_stored,
    history,
    tare_saved,
)
NAMES = (
    "uv_interlocks",
    "completed_means_uv",
    "case_light",
    "over_pressure_alarm",
    "exits",
    "received_are_stored",
    "no_bad_scale",
    "command_once",
    "history_consistent",
    "tare_saved",
)


def check(r: RunResult) -> list[Violation]:
    return [v for inv in INVARIANTS for v in inv(r)]
