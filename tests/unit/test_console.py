"""Console lines: times for people are local and readable, never raw UTC."""

from __future__ import annotations

import io
from datetime import timedelta, timezone

import pytest

from dermaguard.core.events import EmitEvent, Event, ForceSample
from dermaguard.core.words import describe
from dermaguard.daemon.console import ConsolePrinter

TZ = timezone(timedelta(hours=1))


def test_too_soon_names_the_next_allowed_time_in_local_words() -> None:
    event = Event(
        "too_soon",
        0.0,
        {"rest_interval_s": 754.0, "next_allowed_at": "2026-12-05T08:02:30.360Z"},
    )
    line = describe(event, TZ)
    assert line == (
        "WARNING too soon: next allowed Sat 5 Dec 09:02 (only 13 min since the last session)"
    )
    assert "Z" not in line and "T08" not in line


def test_a_malformed_stamp_falls_back_to_the_raw_event_without_failing() -> None:
    event = Event("too_soon", 0.0, {"rest_interval_s": 5.0, "next_allowed_at": "soon"})
    assert describe(event, TZ).startswith("too_soon {")


def test_the_zone_and_the_alarm_each_say_which_force_they_show() -> None:
    """The alarm acts before smoothing, zones after: 4.49 beside 4.52 must not look like a lie."""
    out = io.StringIO()
    printer = ConsolePrinter(0.0, out)
    printer(EmitEvent(Event("over_pressure", 1.0, {"force_n": 4.52, "limit_n": 4.5})))
    printer(ForceSample(1.0, 4.49, "over"))
    alarm, zone = out.getvalue().splitlines()
    assert alarm.endswith("ALARM over-pressure: 4.52 N before smoothing (limit 4.50 N)")
    assert zone.endswith("zone over   4.49 N smoothed")


@pytest.mark.parametrize(
    ("etype", "data", "words"),
    [
        ("command_result", {"command": "ping", "ok": True}, "command ping: ok"),
        (
            "command_result",
            {"command": "tare", "ok": False, "error": "a session is running"},
            "command tare: a session is running",
        ),
        ("new_roller", {"roller_id": 3}, "roller 3 is in use (0 uses)"),
        (
            "calibration_changed",
            {"reason": "tare", "offset": 12, "shift_n": 0.1},
            "calibration changed (tare)",
        ),
    ],
)
def test_events_without_a_number_to_show_still_read_as_words_not_as_their_data(
    etype: str, data: dict[str, object], words: str
) -> None:
    """The terminal, watch and the dashboard share these lines: none may fall back to a dict."""
    assert describe(Event(etype, 0.0, data), TZ) == words
