"""The text views: history table, JSON export and the status summary."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dermaguard.ui.history_view import (
    TRY_COMMAND,
    format_duration,
    format_history,
    format_span,
    format_status,
    history_json,
    live_case,
    local_time,
    parse_utc,
)

TZ = timezone(timedelta(hours=1))


def session(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "session_no": 1,
        "status": "completed",
        "started_at": "2026-11-25T18:50:23.123Z",
        "ended_at": "2026-11-25T18:53:35.523Z",
        "duration_s": 192.4,
        "contact_s": 170.0,
        "zone_s": {"light": 10.0, "ok": 140.0, "high": 18.8, "over": 1.2},
        "peak_n": 4.82,
        "mean_n": 2.1,
        "over_episodes": 1,
        "longest_over_s": 1.2,
        "sterile_at_start": True,
        "cycle_id": 12,
        "rest_interval_s": 3 * 86_400.0,
        "too_soon": False,
        "roller_id": 1,
        "roller_use": 3,
        "end_reason": "docked",
    }
    base.update(over)
    return base


def three_sessions() -> list[dict[str, Any]]:
    return [
        session(),
        session(
            session_no=2,
            started_at="2026-11-26T08:00:00Z",
            duration_s=4680.0,
            peak_n=None,
            over_episodes=0,
            sterile_at_start=False,
            too_soon=True,
            status="interrupted",
            end_reason="interrupted",
            roller_use=4,
        ),
        session(
            session_no=3,
            started_at="2026-11-29T09:15:00Z",
            duration_s=59.6,
            peak_n=2.5,
            over_episodes=0,
            roller_use=5,
        ),
    ]


def table_lines(text: str) -> list[str]:
    return text.split("\n\n", maxsplit=1)[0].splitlines()


def test_history_is_newest_first_in_local_time() -> None:
    lines = table_lines(format_history(three_sessions(), tz=TZ))
    assert lines[0].split() == [
        "#",
        "Date",
        "(local)",
        "Duration",
        "Peak",
        "N",
        "Over",
        "Passes",
        "Spread",
        "Disinfected",
        "Too",
        "soon",
        "Status",
        "Roller",
        "Use",
    ]
    numbers = [line.split()[0] for line in lines[2:]]
    assert numbers == ["3", "2", "1"]
    assert "2026-11-25 19:50" in lines[4]  # 18:50 UTC is 19:50 at UTC+1


def test_history_columns_line_up() -> None:
    lines = table_lines(format_history(three_sessions(), tz=TZ))
    header, rule, *rows = lines
    assert set(rule) <= {"-", " "}
    # Every column starts where its rule segment starts, in every row.
    starts = [i for i, ch in enumerate(rule) if ch == "-" and (i == 0 or rule[i - 1] == " ")]
    assert len(starts) == 12
    date_col = starts[1]
    for row in rows:
        assert row[date_col : date_col + 16].startswith("2026-11-")
    peak_end = starts[4] - 3  # Peak N is right-aligned: its last char, then a 2-space gap
    assert [row[peak_end] for row in rows] == ["0", "—", "2"]
    assert header[peak_end] == "N"


def test_history_cells_show_markers_and_unknowns() -> None:
    rows = table_lines(format_history(three_sessions(), tz=TZ))[2:]
    newest, interrupted, first = (row.split() for row in rows)
    # No technique in these records (older sessions): passes and spread unknown, never 0.
    assert newest[3:] == ["1:00", "2.50", "0", "—", "—", "yes", "—", "1", "5"]
    assert interrupted[3:] == ["78:00", "—", "0", "—", "—", "no", "yes", "interrupted", "1", "4"]
    assert first[3:] == ["3:12", "4.82", "1", "—", "—", "yes", "—", "1", "3"]


def test_history_survives_missing_and_broken_values() -> None:
    odd = {"session_no": 9, "status": "open", "started_at": "not a date", "peak_n": math.nan}
    text = format_history([odd, session()], tz=TZ)
    rows = table_lines(text)[2:]
    assert rows[0].split()[0] == "1"  # a readable start sorts before an unreadable one
    assert rows[1].split() == ["9", "—", "—", "—", "—", "—", "—", "—", "—", "open", "—", "—"]


def test_history_footer_counts_and_age() -> None:
    now = datetime(2026, 11, 29, 11, 15, tzinfo=UTC).timestamp()
    footer = format_history(three_sessions(), now_wall=now, tz=TZ).splitlines()[-1]
    assert footer == (
        "3 sessions · 1 with over-pressure · 1 not disinfected at start · 1 too soon"
        " · 1 interrupted · last started 2 h ago"
    )


def test_empty_history_says_how_to_start() -> None:
    text = format_history([])
    assert text.startswith("No sessions yet.")
    assert TRY_COMMAND in text
    assert TRY_COMMAND == "dermaguard run --simulate scenarios/sterilize_then_use.yaml --speed 30"


def test_history_json_round_trips_with_sorted_keys() -> None:
    sessions = three_sessions()
    text = history_json(sessions)
    assert json.loads(text) == sessions
    assert history_json(list(sessions)) == text  # stable
    first = json.loads(text)[0]
    assert list(first) == sorted(first)
    assert list(first["zone_s"]) == sorted(first["zone_s"])


def test_history_json_is_strict_json() -> None:
    text = history_json([session(peak_n=math.inf, mean_n=math.nan)])
    assert json.loads(text)[0]["peak_n"] is None
    assert "NaN" not in text
    assert "Infinity" not in text
    assert history_json([]) == "[]"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (59.6, "1:00"), (192.4, "3:12"), (4680, "78:00"), (None, "—"), (-1, "—")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (12, "12 s"),
        (600, "10 min"),
        (3 * 3600, "3 h"),
        (5 * 3600 + 600, "5 h 10 min"),
        (2 * 86_400 + 3 * 3600, "2 d 3 h"),
    ],
)
def test_format_span(seconds: float, text: str) -> None:
    assert format_span(seconds) == text


def test_parse_utc_accepts_z_offsets_and_naive() -> None:
    expected = datetime(2026, 11, 25, 18, 50, 23, 123000, tzinfo=UTC)
    assert parse_utc("2026-11-25T18:50:23.123Z") == expected
    assert parse_utc("2026-11-25T19:50:23.123+01:00") == expected
    assert parse_utc("2026-11-25T18:50:23.123") == expected
    assert parse_utc("garbage") is None
    assert parse_utc(None) is None
    assert parse_utc("0001-01-01T00:00:00+01:00") is None  # before datetime.min in UTC


# --- status ------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()


def status(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "case_state": "sterile",
        "sterile": True,
        "sterile_until": "2026-11-30T12:00:00Z",
        "roller_id": 1,
        "roller_uses": 5,
        "replace_after_uses": 10,
        "last_session": three_sessions()[2],
        "next_allowed_at": "2026-11-28T09:15:00Z",
        "needle_mm": 0.5,
    }
    base.update(over)
    return base


def test_status_allows_a_session_when_rested_and_disinfected() -> None:
    text = format_status(status(), now_wall=NOW, tz=TZ)
    assert text.splitlines() == [
        "Case:          closed; roller disinfected until 2026-11-30 13:00",
        "Roller:        #1 · 5 of 10 uses (5 left) · 0.5 mm needles",
        "Last session:  #3 · 2026-11-29 10:15 · 1:00 · peak 2.50 N · 0 over-pressure episodes",
        "Next session:  ALLOWED now",
    ]


def test_status_says_when_rest_is_needed() -> None:
    text = format_status(status(next_allowed_at="2026-11-30T17:10:00Z"), now_wall=NOW, tz=TZ)
    assert text.splitlines()[-1] == (
        "Next session:  NOT allowed yet: the skin needs rest until 2026-11-30 18:10 (in 1 d 5 h)"
    )


def test_status_blocks_a_roller_not_disinfected_and_a_worn_one() -> None:
    text = format_status(
        status(case_state="open", sterile=False, sterile_until=None, roller_uses=10),
        now_wall=NOW,
        tz=TZ,
    )
    lines = text.splitlines()
    assert lines[0] == "Case:          lid open; roller NOT disinfected"
    assert "10 of 10 uses (replace it now)" in lines[1]
    assert lines[-1].startswith(
        "Next session:  NOT allowed yet: the roller is not disinfected: clean it, close the case"
    )
    assert lines[-1].endswith("the roller has reached its use limit: replace it")


def test_status_without_history_or_limits() -> None:
    text = format_status(
        {
            "case_state": "ready",
            "sterile": False,
            "sterile_until": None,
            "roller_id": 2,
            "roller_uses": 0,
            "replace_after_uses": None,
            "last_session": None,
            "next_allowed_at": None,
            "needle_mm": 0.25,
        },
        now_wall=NOW,
    )
    lines = text.splitlines()
    assert lines[1] == "Roller:        #2 · 0 uses · 0.25 mm needles"
    assert lines[2] == "Last session:  none yet"
    assert "rest" not in lines[3]
    assert "not disinfected" in lines[3]


def test_status_marks_an_interrupted_unsterile_last_session() -> None:
    last = three_sessions()[1]
    text = format_status(status(last_session=last), now_wall=NOW, tz=TZ)
    assert text.splitlines()[2].endswith(
        "peak — · 0 over-pressure episodes · NOT disinfected at start · interrupted"
    )


def test_a_running_daemons_cycle_shows_its_countdown() -> None:
    live = {"running": True, "case_state": "sterilizing", "remaining_s": 570.0, "sterile": False}
    assert live_case(live) == ("closed, UV-C cycle running, 10 min left", False)


def test_a_stopped_daemons_cycle_is_shown_cut_short_never_counting_down() -> None:
    wall = datetime(2026, 12, 5, 8, 2, tzinfo=UTC).timestamp()
    live = {
        "running": False,
        "case_state": "sterilizing",
        "remaining_s": 570.0,
        "sterile": True,
        "updated_wall": wall,
    }
    text, sterile = live_case(live, TZ)
    assert "left" not in text and "cut short" in text and sterile is False
    assert text.endswith("(daemon stopped: last known state at Sat 5 Dec 09:02)")


def test_a_stopped_daemons_other_states_are_marked_last_known() -> None:
    text, sterile = live_case({"running": False, "case_state": "sterile", "sterile": True})
    assert text == "closed (daemon stopped: last known state)" and sterile is True


def test_local_time_is_short_and_readable() -> None:
    wall = datetime(2026, 12, 5, 8, 2, 30, tzinfo=UTC).timestamp()
    assert local_time(wall, TZ) == "Sat 5 Dec 09:02"


def technique(passes: int, cv: float | None) -> dict[str, Any]:
    return {
        "passes": passes,
        "pass_force_n": 1.9,
        "steadiness_cv": cv,
        "zone_share": {"light": 0.1, "ok": 0.8, "high": 0.1, "over": 0.0},
        "passes_high": 1,
        "passes_over": 0,
        "longest_ok_s": 8.0,
    }


def test_history_shows_passes_and_spread_and_their_trend_over_weeks() -> None:
    day = 86_400.0
    now = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()

    def at(days_ago: float) -> str:
        moment = datetime.fromtimestamp(now - days_ago * day, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    sessions = [
        session(session_no=1, started_at=at(40), technique=technique(30, 0.30)),
        session(session_no=2, started_at=at(35), technique=technique(34, 0.20)),
        session(session_no=3, started_at=at(10), technique=technique(44, 0.12)),
        session(session_no=4, started_at=at(3), technique=technique(46, 0.10)),
        session(session_no=5, started_at=at(2)),  # technique unknown: left out, not 0
    ]
    text = format_history(sessions, now, tz=TZ)
    newest_with = next(r for r in table_lines(text)[2:] if r.split()[0] == "4").split()
    assert newest_with[6:8] == ["46", "10%"]
    assert text.splitlines()[-1] == (
        "Technique, median of the last 4 weeks: 45 passes, spread 11% (2 sessions); "
        "the 4 weeks before: 32 passes, spread 25% (2 sessions)"
    )
