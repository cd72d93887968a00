"""The PNG charts: real files from synthetic sessions, checked by header and by structure."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle
from pytest_mock import MockerFixture

from dermaguard.config.params import default_pass_params, default_zone_thresholds
from dermaguard.ui.report import (
    SESSION_SIZE_PX,
    build_calendar_figure,
    build_session_figure,
    calendar_figure,
    calendar_size_px,
    rest_text,
    session_figure,
)
from dermaguard.ui.report_data import ReportError, TraceSample

TZ = timezone(timedelta(hours=1))
ZONES = default_zone_thresholds()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EN_DASH = "\u2013"
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which a valid PNG has first."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, "not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def force_line(ax: Axes) -> tuple[FloatArray, FloatArray]:
    """The plotted force line's (x, y) data as float arrays."""
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "force")
    xs = np.asarray(line.get_xdata(), dtype=np.float64)
    ys = np.asarray(line.get_ydata(), dtype=np.float64)
    return xs, ys


def zone_of(force: float | None) -> str | None:
    return None if force is None else ZONES.plain_zone(force)


def realistic_trace() -> list[TraceSample]:
    """~3 min at 10 Hz: rolling strokes in `ok`, one push over 4.5 N, a 4 s sensor fault."""
    trace: list[TraceSample] = []
    for i in range(1800):
        t = i / 10
        # A first touch, then strokes back and forth inside `ok`.
        stroke = t * 0.6 if t < 3 else 2.0 + 0.7 * math.sin(t * 1.3) + 0.15 * math.sin(t * 7.1)
        if 60 <= t < 68:  # one push over the limit, peaking at ~5.1 N
            stroke += (5.1 - stroke) * math.sin((t - 60) / 8 * math.pi) ** 2
        force = None if 120 <= t < 124 else stroke  # HX711 unplugged: force unknown
        trace.append((t, force, zone_of(force)))
    return trace


def summary(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "session_no": 12,
        "status": "completed",
        "started_at": "2026-11-25T18:50:23.123Z",
        "ended_at": "2026-11-25T18:53:23.123Z",
        "duration_s": 180.0,
        "contact_s": 176.0,
        "zone_s": {"light": 6.0, "ok": 150.0, "high": 14.0, "over": 2.1},
        "peak_n": 5.1,
        "mean_n": 2.1,
        "over_episodes": 1,
        "longest_over_s": 2.1,
        "sterile_at_start": True,
        "cycle_id": 12,
        "rest_interval_s": 3 * 86_400.0,
        "too_soon": False,
        "roller_id": 1,
        "roller_use": 7,
        "end_reason": "docked",
    }
    base.update(over)
    return base


def month_of_sessions() -> list[dict[str, Any]]:
    """About a month of sessions every 2 to 4 days, with one of each kind of alert."""
    sessions: list[dict[str, Any]] = []
    start = datetime(2026, 11, 2, 19, 0, tzinfo=UTC)
    offsets = [0, 3, 6, 6.1, 9, 13, 16, 19, 23, 26]
    for n, days in enumerate(offsets, start=1):
        started = start + timedelta(days=days)
        sessions.append(
            summary(
                session_no=n,
                started_at=started.isoformat().replace("+00:00", "Z"),
                ended_at=(started + timedelta(minutes=4)).isoformat().replace("+00:00", "Z"),
                peak_n=4.9 if n in (3, 8) else 2.9,
                over_episodes=1 if n in (3, 8) else 0,
                sterile_at_start=n != 6,
                too_soon=n == 4,
                status="interrupted" if n == 7 else "completed",
                rest_interval_s=None if n == 1 else (days - offsets[n - 2]) * 86_400.0,
                roller_use=n,
            )
        )
    return sessions


# --- session chart -------------------------------------------------------------------------------


def test_session_png_has_expected_size(tmp_path: Path) -> None:
    out = session_figure(summary(), realistic_trace(), ZONES, tmp_path / "s12.png", tz=TZ)
    assert out == tmp_path / "s12.png"
    assert png_size(out) == SESSION_SIZE_PX == (1200, 600)
    assert [p.name for p in tmp_path.iterdir()] == ["s12.png"], "temp file left behind"


def test_session_figure_uses_agg_canvas() -> None:
    fig = build_session_figure(summary(), realistic_trace(), ZONES, tz=TZ)
    assert isinstance(fig.canvas, FigureCanvasAgg)


def test_report_never_imports_pyplot(tmp_path: Path) -> None:
    """Drawing must not touch pyplot's global state or pick a GUI backend."""
    code = (
        "import sys; from pathlib import Path\n"
        "from dermaguard.ui.report import session_figure\n"
        "from dermaguard.config.params import default_zone_thresholds\n"
        "trace = [(i / 10, 2.0, 'ok') for i in range(50)]\n"
        "s = {'session_no': 1, 'started_at': '2026-11-25T18:50:23Z', 'duration_s': 5.0}\n"
        f"session_figure(s, trace, default_zone_thresholds(), Path({str(tmp_path / 'x.png')!r}))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert png_size(tmp_path / "x.png") == (1200, 600)


def test_session_figure_marks_episode_fault_and_bands() -> None:
    fig = build_session_figure(summary(), realistic_trace(), ZONES, tz=TZ)
    ax = fig.axes[0]
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "force" in labels
    assert "over-pressure episode" in labels
    assert "sensor fault / force unknown" in labels
    assert f"ok zone (1{EN_DASH}3 N)" in labels
    assert "over zone (≥ 4.5 N)" in labels
    assert ax.get_xlabel() == "time since session start (s)"
    assert ax.get_ylabel() == "force (N)"
    title = ax.get_title(loc="left")
    assert title == "Session 12 · 2026-11-25 19:50 · 3:00 · peak 5.10 N"
    texts = [t.get_text() for t in ax.texts]
    assert "disinfected at start (cycle 12)" in texts
    # The force line is broken (NaN) over the fault, not drawn through it at 0 N.
    xs, ys = force_line(ax)
    fault = ys[(xs >= 120) & (xs < 124)]
    assert fault.size > 0
    assert np.isnan(fault).all()


def test_session_figure_honours_configured_thresholds() -> None:
    zones = {"contact_n": 0.2, "ok_n": 0.8, "high_n": 2.5, "over_n": 4.0}
    fig = build_session_figure(summary(), realistic_trace(), zones, tz=TZ)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"ok zone (0.8{EN_DASH}2.5 N)" in labels
    assert "over zone (≥ 4 N)" in labels


def test_peak_note_says_when_the_trace_missed_the_full_rate_peak() -> None:
    fig = build_session_figure(summary(peak_n=5.4), realistic_trace(), ZONES, tz=TZ)
    ax = fig.axes[0]
    assert ax.get_title(loc="left").endswith("peak 5.40 N")
    assert any(t.get_text().endswith("(session peak 5.40 N)") for t in ax.texts)
    assert ax.get_ylim()[1] >= 5.4


def test_a_start_not_disinfected_is_said_plainly() -> None:
    fig = build_session_figure(
        summary(sterile_at_start=False, cycle_id=None), realistic_trace(), ZONES, tz=TZ
    )
    assert "NOT disinfected at start" in [t.get_text() for t in fig.axes[0].texts]


def test_sampling_hole_is_unknown_too() -> None:
    trace = [(i / 10, 2.0, "ok") for i in range(100)] + [
        (20 + i / 10, 2.0, "ok") for i in range(100)
    ]
    fig = build_session_figure(summary(duration_s=30.0), trace, ZONES, tz=TZ)
    ax = fig.axes[0]
    assert "sensor fault / force unknown" in [t.get_text() for t in fig.legends[0].get_texts()]
    _, ys = force_line(ax)
    assert np.isnan(ys).any()


@pytest.mark.parametrize("trace", [[], None])
def test_empty_trace_is_a_clear_error(tmp_path: Path, trace: list[TraceSample] | None) -> None:
    with pytest.raises(ReportError, match="session 7 has no stored force trace"):
        session_figure(summary(session_no=7), trace, ZONES, tmp_path / "s7.png")
    assert not list(tmp_path.iterdir())


def test_unknown_session_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="unknown session"):
        session_figure(None, realistic_trace(), ZONES, tmp_path / "x.png")


def test_all_unknown_force_still_draws_a_fault_chart(tmp_path: Path) -> None:
    trace: list[TraceSample] = [(i / 10, None, None) for i in range(300)]
    s = summary(peak_n=None, mean_n=None, over_episodes=0, duration_s=30.0)
    out = session_figure(s, trace, ZONES, tmp_path / "fault.png", tz=TZ)
    assert png_size(out) == (1200, 600)
    ax = build_session_figure(s, trace, ZONES, tz=TZ).axes[0]
    assert ax.get_title(loc="left").endswith("peak unknown")
    assert any("force unknown throughout" in t.get_text() for t in ax.texts)
    spans = [p for p in ax.patches if p.get_label() == "sensor fault / force unknown"]
    assert spans or any(
        isinstance(c, PolyCollection) and c.get_label() == "sensor fault / force unknown"
        for c in ax.collections
    )


def test_bad_thresholds_are_rejected() -> None:
    with pytest.raises(ReportError, match="must rise"):
        build_session_figure(
            summary(),
            realistic_trace(),
            {"contact_n": 0.3, "ok_n": 3.0, "high_n": 1.0, "over_n": 4.5},
        )
    with pytest.raises(ReportError, match="over_n"):
        build_session_figure(
            summary(), realistic_trace(), {"contact_n": 0.3, "ok_n": 1.0, "high_n": 3.0}
        )


def test_unwritable_destination_is_a_report_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ReportError, match="does not exist"):
        session_figure(summary(), realistic_trace(), ZONES, blocker / "s.png")


def test_a_missing_directory_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"the directory .*nodir does not exist"):
        session_figure(summary(), realistic_trace(), ZONES, tmp_path / "nodir" / "s.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["s.jpg", "s.txt", "s", "s.svg"])
def test_a_name_that_is_not_png_is_refused_before_anything_is_written(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ReportError, match=r"PNG images only.*s\.png"):
        session_figure(summary(), realistic_trace(), ZONES, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_directory_is_a_report_error(tmp_path: Path, mocker: MockerFixture) -> None:
    mocker.patch("tempfile.mkstemp", side_effect=PermissionError(13, "Permission denied"))
    with pytest.raises(ReportError, match=r"cannot write .*Permission denied"):
        session_figure(summary(), realistic_trace(), ZONES, tmp_path / "s.png")


def test_existing_file_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    out.write_bytes(b"old")
    session_figure(summary(), realistic_trace(), ZONES, out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


# --- calendar ------------------------------------------------------------------------------------


def test_calendar_png_has_expected_size(tmp_path: Path) -> None:
    out = calendar_figure(
        month_of_sessions(), 5, tmp_path / "cal.png", today=date(2026, 11, 30), tz=TZ
    )
    assert png_size(out) == calendar_size_px(5) == (1200, 700)
    assert [p.name for p in tmp_path.iterdir()] == ["cal.png"]


def _cell_texts(fig_texts: Sequence[Any]) -> list[str]:
    return [t.get_text() for t in fig_texts]


def test_calendar_marks_alerts_and_rest() -> None:
    fig = build_calendar_figure(month_of_sessions(), 5, date(2026, 11, 30), tz=TZ)
    assert isinstance(fig.canvas, FigureCanvasAgg)
    ax = fig.axes[0]
    texts = _cell_texts(ax.texts)
    assert "rest 3.0 d" in texts
    assert "rest 2.4 h" in texts  # the too-soon session, 2.4 h after the one before
    assert "2 sessions" in texts  # two sessions on 8 Nov (local)
    assert "peak 4.9 N" in texts
    markers = [ln.get_marker() for ln in ax.get_lines()]
    assert markers.count("^") == 2  # over-pressure on two days
    assert markers.count("X") == 1  # one start not disinfected
    assert markers.count("D") == 1  # one too-soon day
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "session day",
        "interrupted only",
        "over-pressure alert",
        "NOT disinfected at start",
        "too soon (short rest)",
        "today",
    ]
    assert "10 sessions" in fig.get_suptitle()
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
        "Sat",
        "Sun",
    ]
    cells = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_fill()]
    assert len(cells) == 5 * 7


def test_calendar_rows_are_weeks_ending_in_the_current_one() -> None:
    fig = build_calendar_figure([], 4, date(2026, 11, 25), tz=TZ)  # a Wednesday
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2 Nov", "9 Nov", "16 Nov", "23 Nov"]
    assert "no sessions in these weeks" in fig.get_suptitle()


def test_calendar_rest_falls_back_to_previous_session_end() -> None:
    sessions = [
        summary(session_no=1, started_at="2026-11-20T18:00:00Z", ended_at="2026-11-20T18:10:00Z"),
        summary(session_no=2, started_at="2026-11-22T18:10:00Z", rest_interval_s=None),
    ]
    ax = build_calendar_figure(sessions, 1, date(2026, 11, 22), tz=TZ).axes[0]
    assert "rest 2.0 d" in _cell_texts(ax.texts)


@pytest.mark.parametrize("weeks", [0, -1, 105])
def test_calendar_rejects_bad_week_counts(tmp_path: Path, weeks: int) -> None:
    with pytest.raises(ReportError, match="weeks"):
        calendar_figure([], weeks, tmp_path / "c.png", today=date(2026, 11, 25))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(754.0, "rest 13 min"), (8_640.0, "rest 2.4 h"), (259_200.0, "rest 3.0 d")],
)
def test_calendar_rest_is_shown_in_a_unit_that_reads(seconds: float, text: str) -> None:
    assert rest_text(seconds) == text


def _band_on_white(ax: Axes, zone: str) -> np.ndarray:
    """The colour a person sees for a zone band: its RGBA blended over the white axes."""
    [band] = [p for p in ax.patches if str(p.get_label()).startswith(f"{zone} zone")]
    r, g, b, a = band.get_facecolor()
    return np.array([r, g, b]) * a + (1 - a)


def test_the_high_and_over_bands_are_clearly_different_colours() -> None:
    fig = build_session_figure(summary(), realistic_trace(), ZONES)
    ax = fig.axes[0]
    high, over, ok = (_band_on_white(ax, z) for z in ("high", "over", "ok"))
    # Over a white background, at least a fifth of the full scale apart (the old pair: ~0.05).
    assert np.linalg.norm(high - over) > 0.2
    assert np.linalg.norm(ok - high) > 0.1


def test_the_passes_found_in_the_trace_are_marked_and_counted() -> None:
    """Three strokes between lifts: three numbered marks, and the summary's count and spread
    in the details line."""
    stroke = [2.0] * 20
    lift = [0.0] * 10
    forces = lift + stroke + lift + stroke + lift + stroke + lift
    trace = [(i / 10, f, "ok" if f else "none") for i, f in enumerate(forces)]
    technique = {"passes": 3, "steadiness_cv": 0.12}
    fig = build_session_figure(
        summary(duration_s=len(forces) / 10, technique=technique),
        trace,
        ZONES,
        tz=TZ,
        passes=default_pass_params(),
    )
    ax = fig.axes[0]
    assert "passes (3, from the stored trace)" in [t.get_text() for t in fig.legends[0].get_texts()]
    texts = [t.get_text() for t in ax.texts]
    assert {"1", "2", "3"} <= set(texts)
    assert any("3 passes, spread 12%" in t for t in texts)


def test_without_pass_thresholds_no_pass_is_marked() -> None:
    fig = build_session_figure(summary(), realistic_trace(), ZONES, tz=TZ)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any(label.startswith("passes") for label in labels)


def test_calendar_by_steadiness_colours_each_session_day_by_its_least_steady_session() -> None:
    """Session days take the band of their least steady session; a day whose sessions have no
    measured spread (recorded before passes were) is grey, never counted as steady."""
    from matplotlib.colors import to_hex

    from dermaguard.ui.report import steadiness_fill

    sessions = month_of_sessions()
    cvs: dict[int, float | None] = {1: 0.08, 2: 0.22, 3: 0.45, 4: 0.05, 5: None}
    for s in sessions:
        cv = cvs.get(s["session_no"])
        s["technique"] = None if cv is None else {"passes": 12, "steadiness_cv": cv}
    fig = build_calendar_figure(sessions, 5, date(2026, 11, 30), tz=TZ, by="steadiness")
    ax = fig.axes[0]
    fills = [to_hex(p.get_facecolor()) for p in ax.patches if isinstance(p, Rectangle)]
    steady, uneven, unsteady, unknown = "#b7e4c7", "#ffe8a1", "#f5b7b1", "#dee2e6"
    assert fills.count(uneven) == 1  # session 2
    # Session 3 (0.45) and, on the same day, session 4 (0.05): the day is the least steady.
    assert fills.count(unsteady) == 1
    assert fills.count(steady) == 1  # session 1 only
    assert fills.count(unknown) == 6  # sessions 5-10 have no measured spread
    assert [steadiness_fill(c) for c in (0.15, 0.1500001, 0.30, 0.31, None)] == [
        steady, uneven, uneven, unsteady, unknown,
    ]  # fmt: skip
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:4] == [
        "steady (spread up to 15 %)",
        "uneven (up to 30 %)",
        "unsteady (over 30 %)",
        "spread not measured",
    ]
    # The default calendar is unchanged: every session day alike.
    plain = build_calendar_figure(sessions, 5, date(2026, 11, 30), tz=TZ)
    plain_fills = [to_hex(p.get_facecolor()) for p in plain.axes[0].patches]
    assert uneven not in plain_fills and unsteady not in plain_fills
