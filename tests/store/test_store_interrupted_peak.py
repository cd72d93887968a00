"""A session cut short keeps the peak its over-pressure alarm logged, even with no trace."""

from __future__ import annotations

from dermaguard.store.recover import LoggedEvent, interrupted_summary

START = {"session_no": 3, "sterile": True, "roller_id": 1, "roller_use": 3, "t_start": 10.0}


def test_an_interrupted_session_with_an_alarm_but_no_flushed_trace_has_that_peak() -> None:
    events = [LoggedEvent("over_pressure", 90.0, {"force_n": 6.4, "limit_n": 4.5})]
    summary = interrupted_summary(
        START, started_at="2026-12-01T10:00:00.000Z", started_wall=1_790_000_000.0,
        trace=[], events=events, t0_mono=10.0,
    )  # fmt: skip
    assert summary["over_episodes"] == 1
    assert summary["peak_n"] == 6.4  # never "—" beside an over-pressure episode


def test_a_higher_traced_peak_stands() -> None:
    events = [LoggedEvent("over_pressure", 12.0, {"force_n": 5.0, "limit_n": 4.5})]
    trace = [(0.5, 2.0, "ok"), (1.0, 5.0, "over"), (1.5, 7.25, "over"), (2.0, 2.0, "ok")]
    summary = interrupted_summary(
        START, started_at="2026-12-01T10:00:00.000Z", started_wall=1_790_000_000.0,
        trace=trace, events=events, t0_mono=10.0,
    )  # fmt: skip
    assert summary["peak_n"] == 7.25
