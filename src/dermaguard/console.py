"""Human-readable lines for what the daemon does: zone changes, alarms, faults."""

from __future__ import annotations

import string
import sys
from datetime import tzinfo
from typing import Any, TextIO

from dermaguard.core.events import (
    CaseStatus,
    Effect,
    EmitEvent,
    Event,
    ForceSample,
    ShowIndicators,
    Zone,
)
from dermaguard.history_view import case_word, format_span, local_time, parse_utc
from dermaguard.line_writer import LineWriter

_EVENT_TEXT = {
    "daemon_started": "started",
    # The alarm acts on the force before smoothing (it never waits for it); zones and the gauge
    # show the smoothed force: each line says which one it is.
    "over_pressure": "ALARM over-pressure: {force_n:.2f} N before smoothing "
    "(limit {limit_n:.2f} N)",
    "over_pressure_cleared": "alarm cleared: over-pressure lasted {duration_s:.1f} s, "
    "peak {peak_n:.2f} N",
    "sensor_fault": "FAULT force sensor: {reason} (force unknown)",
    "sensor_fault+detail": "FAULT force sensor: {reason}, {detail} (force unknown)",
    "sensor_recovered": "force sensor recovered",
    "sterilization_started": "UV-C cycle {cycle_id} started ({mode}, {length_s:.0f} s)",
    "sterilization_completed": "UV-C cycle {cycle_id} completed after {duration_s:.0f} s: "
    "roller disinfected",
    "sterilization_aborted": "UV-C cycle {cycle_id} ABORTED after {after_s:.0f} s: {reason}",
    "unsterile_use": "ALARM use without disinfection: the roller touched skin without a valid "
    "UV-C cycle",
    "command_result": "command {command}: {error}",
    "session_started": "session {session_no} started (roller use {roller_use})",
    "session_ended": "session {session_no} ended ({end_reason}): {duration_s:.0f} s, "
    "{contact_s:.0f} s in contact, {over_episodes} over-pressure episode(s)",
    # The useful part first: a narrow view that cuts the line keeps it.
    "too_soon": "WARNING too soon: next allowed {next_allowed_at:local} "
    "(only {rest_interval_s:span} since the last session)",
    "roller_replace_due": "WARNING roller {roller_id} has {uses} uses (limit {limit}): replace it",
    "daemon_stopping": "stopping",
}


class _Readable(string.Formatter):
    """``{x:local}`` shows an ISO-8601 UTC stamp as local time (``Sat 5 Dec 09:02``) and
    ``{x:span}`` seconds as a human span (``12 min``): times for people, never raw UTC."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "local":
            moment = parse_utc(value)
            if moment is None:
                raise ValueError(f"not a timestamp: {value!r}")
            return local_time(moment.timestamp(), self.tz)
        if format_spec == "span":
            return format_span(float(value))
        return str(super().format_field(value, format_spec))


def describe(event: Event, tz: tzinfo | None = None) -> str:
    """One line for a person; ``tz`` overrides the machine's zone for times (tests)."""
    template = _EVENT_TEXT.get(f"{event.type}+detail" if "detail" in event.data else event.type)
    template = template or _EVENT_TEXT.get(event.type)
    if template is None:
        extra = " ".join(f"{k}={v}" for k, v in event.data.items())
        return f"{event.type} {extra}".strip()
    try:
        return _Readable(tz).format(template, **event.data)
    except (KeyError, ValueError, TypeError):
        return f"{event.type} {dict(event.data)}"


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


class ConsolePrinter:
    """An effect sink that prints a line per zone change and per event."""

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
        elif isinstance(effect, ShowIndicators):
            pass

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
