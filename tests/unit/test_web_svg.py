"""The dashboard's server-drawn charts: gaps for an unknown force, escaped text, flagged days."""

from __future__ import annotations

from datetime import UTC, date, datetime

from dermaguard.config.load import ZonesConfig
from dermaguard.ui.web.svg import calendar_svg, trace_svg


def test_an_unknown_force_is_a_gap_never_a_line_to_zero() -> None:
    trace = [(0.0, 1.0, "ok"), (1.0, 2.0, "ok"), (2.0, None, None), (3.0, 2.5, "ok")]
    svg = trace_svg(trace, ZonesConfig(), "session <1>")
    assert svg.count("<polyline") == 2
    assert 'aria-label="session &lt;1&gt;"' in svg


def test_the_calendar_fills_session_days_and_flags_the_risky_ones() -> None:
    day = datetime(2026, 12, 2, 9, 0, tzinfo=UTC).timestamp()
    sessions = [{"started_wall": day, "over_episodes": 1, "too_soon": True}]
    svg = calendar_svg(sessions, 2, date(2026, 12, 3), UTC)
    assert "2026-12-02: 1 session(s)" in svg
    assert "#ff9c9c" in svg  # over-pressure: red
    assert ">1!</text>" in svg  # too soon: marked
    assert "2026-11-23: 0 session(s)" in svg  # the first Monday of two weeks


def test_the_calendar_names_the_months() -> None:
    svg = calendar_svg([], 2, date(2026, 12, 3), UTC)
    assert ">Nov</text>" in svg  # the first day shown, 23 November
    assert ">Dec</text>" in svg  # where December starts


def test_the_trace_axis_ends_with_the_session_not_its_idle_tail() -> None:
    trace = [(0.0, 1.0, "ok"), (2.0, 2.0, "ok")]
    assert ">2 s</text>" in trace_svg(trace, ZonesConfig(), "s")
    assert ">119 s</text>" in trace_svg(trace, ZonesConfig(), "s", end_s=119.0)
