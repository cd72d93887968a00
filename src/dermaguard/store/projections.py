"""The records derived from the event log: sessions, sterilization cycles and rollers.

Each function applies one event to its table, on the writer's connection and inside the
writer's transaction (:meth:`dermaguard.store.db.Store.append_event`). One that cannot apply
its event raises one of :data:`PROJECTION_ERRORS`; the writer then undoes it and keeps the
event, since the log is the record and these tables are views of it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from dermaguard.common.timefmt import iso_utc, utc_epoch
from dermaguard.core.events import EventType
from dermaguard.store.codec import dumps, loads
from dermaguard.store.reader import StoredEvent

#: Without ``t_start`` in ``session_started``, the session's start is found from ``started_at``
#: if it lies at most this long before the event; otherwise the event's own time is used.
MAX_START_LEAD_S = 3600.0

#: What a projection that cannot apply its event raises (a malformed event, a duplicate number).
PROJECTION_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    KeyError,
    TypeError,
    ValueError,
)


def _opt_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def session_t0(data: Mapping[str, Any], t: float, wall: float) -> float:
    """The session's start on the monotonic clock, which trace times are relative to.

    The core dates a session from leaving the dock, before the first contact that emits
    ``session_started``: ``t_start`` says when, or else ``started_at`` against ``wall``.
    """
    t_start = _opt_float(data.get("t_start"))
    if t_start is not None:
        return t_start
    started_wall = utc_epoch(str(data.get("started_at", "")))
    if started_wall is not None and 0.0 <= wall - started_wall <= MAX_START_LEAD_S:
        return t - (wall - started_wall)
    return t


def session_started(
    conn: sqlite3.Connection, data: Mapping[str, Any], stored: StoredEvent, t0: float, wall: float
) -> int:
    """The session's row, ``open``; returns its number."""
    no = int(data["session_no"])
    started_at = str(data.get("started_at") or stored.ts)
    started_wall = utc_epoch(started_at)
    touch_roller(conn, data, stored.ts)
    conn.execute(
        "INSERT INTO sessions (session_no, status, started_at, started_wall, t0_mono, "
        "start_seq, sterile_at_start, cycle_id, rest_interval_s, too_soon, roller_id, "
        "roller_use, summary) VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            no,
            started_at,
            wall if started_wall is None else started_wall,
            t0,
            stored.seq,
            _opt_bool(data.get("sterile")),
            _opt_int(data.get("cycle_id")),
            _opt_float(data.get("rest_interval_s")),
            _opt_bool(data.get("too_soon")),
            _opt_int(data.get("roller_id")),
            _opt_int(data.get("roller_use")),
            dumps(data),
        ),
    )
    return no


def session_ended(
    conn: sqlite3.Connection, data: Mapping[str, Any], stored: StoredEvent, wall: float
) -> None:
    """The session's row, ``completed`` with its summary (made if its start was not stored)."""
    no = int(data["session_no"])
    ended_at = str(data.get("ended_at") or stored.ts)
    ended_wall = utc_epoch(ended_at)
    ended_wall = wall if ended_wall is None else ended_wall
    duration = _opt_float(data.get("duration_s"))
    started_at = str(data.get("started_at") or iso_utc(ended_wall - (duration or 0.0)))
    started_wall = utc_epoch(started_at)
    touch_roller(conn, data, stored.ts)
    conn.execute(
        "INSERT INTO sessions (session_no, status, started_at, started_wall, ended_at, "
        "ended_wall, duration_s, contact_s, peak_n, mean_n, over_episodes, "
        "longest_over_s, sterile_at_start, cycle_id, rest_interval_s, too_soon, "
        "roller_id, roller_use, end_reason, summary, passes, pass_force_n, steadiness_cv) "
        "VALUES (?, 'completed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (session_no) DO UPDATE SET status = 'completed', "
        "ended_at = excluded.ended_at, ended_wall = excluded.ended_wall, "
        "duration_s = excluded.duration_s, contact_s = excluded.contact_s, "
        "peak_n = excluded.peak_n, mean_n = excluded.mean_n, "
        "over_episodes = excluded.over_episodes, "
        "longest_over_s = excluded.longest_over_s, "
        "sterile_at_start = excluded.sterile_at_start, cycle_id = excluded.cycle_id, "
        "rest_interval_s = excluded.rest_interval_s, too_soon = excluded.too_soon, "
        "roller_id = excluded.roller_id, roller_use = excluded.roller_use, "
        "end_reason = excluded.end_reason, summary = excluded.summary, "
        "passes = excluded.passes, pass_force_n = excluded.pass_force_n, "
        "steadiness_cv = excluded.steadiness_cv",
        (
            no,
            started_at,
            ended_wall - (duration or 0.0) if started_wall is None else started_wall,
            ended_at,
            ended_wall,
            duration,
            _opt_float(data.get("contact_s")),
            _opt_float(data.get("peak_n")),
            _opt_float(data.get("mean_n")),
            _opt_int(data.get("over_episodes")),
            _opt_float(data.get("longest_over_s")),
            _opt_bool(data.get("sterile_at_start")),
            _opt_int(data.get("cycle_id")),
            _opt_float(data.get("rest_interval_s")),
            _opt_bool(data.get("too_soon")),
            _opt_int(data.get("roller_id")),
            _opt_int(data.get("roller_use")),
            None if data.get("end_reason") is None else str(data["end_reason"]),
            dumps(data),
            *technique_columns(data),
        ),
    )


def technique_columns(data: Mapping[str, Any]) -> tuple[int | None, float | None, float | None]:
    """(passes, pass_force_n, steadiness_cv) of a summary; all ``None`` when not measured."""
    technique = data.get("technique")
    if not isinstance(technique, Mapping):
        return None, None, None
    return (
        _opt_int(technique.get("passes")),
        _opt_float(technique.get("pass_force_n")),
        _opt_float(technique.get("steadiness_cv")),
    )


def touch_roller(conn: sqlite3.Connection, data: Mapping[str, Any], ts: str) -> None:
    """The session's roller, with its use count if that went up."""
    roller_id = _opt_int(data.get("roller_id"))
    if roller_id is None:
        return
    # The WHERE keeps an unchanged roller's page out of the transaction (no write).
    conn.execute(
        "INSERT INTO rollers (roller_id, installed_at, uses) VALUES (?, ?, ?) "
        "ON CONFLICT (roller_id) DO UPDATE SET uses = excluded.uses "
        "WHERE excluded.uses > uses",
        (roller_id, ts, _opt_int(data.get("roller_use")) or 0),
    )


def cycle_started(
    conn: sqlite3.Connection, data: Mapping[str, Any], stored: StoredEvent, _wall: float
) -> None:
    conn.execute(
        "INSERT INTO cycles (cycle_id, started_at, data) VALUES (?, ?, ?)",
        (int(data["cycle_id"]), stored.ts, dumps(data)),
    )


def cycle_ended(
    conn: sqlite3.Connection, data: Mapping[str, Any], stored: StoredEvent, wall: float
) -> None:
    """A cycle completed or aborted (made, dated from its length, if its start was not stored)."""
    cycle_id = int(data["cycle_id"])
    completed = "reason" not in data
    duration = _opt_float(data.get("duration_s" if completed else "after_s"))
    row = conn.execute("SELECT data FROM cycles WHERE cycle_id = ?", (cycle_id,)).fetchone()
    merged = {**(loads(row["data"]) if row is not None else {}), **data}
    if row is None:  # its start was not recorded: date it from its length
        conn.execute(
            "INSERT INTO cycles (cycle_id, started_at) VALUES (?, ?)",
            (cycle_id, iso_utc(wall - (duration or 0.0))),
        )
    conn.execute(
        "UPDATE cycles SET ended_at = ?, outcome = ?, reason = ?, duration_s = ?, data = ? "
        "WHERE cycle_id = ?",
        (
            stored.ts,
            "completed" if completed else "aborted",
            None if completed else str(data["reason"]),
            duration,
            dumps(merged),
            cycle_id,
        ),
    )


def roller_added(
    conn: sqlite3.Connection, data: Mapping[str, Any], stored: StoredEvent, _wall: float
) -> None:
    conn.execute(
        "INSERT INTO rollers (roller_id, installed_at, uses) VALUES (?, ?, 0) "
        "ON CONFLICT (roller_id) DO NOTHING",
        (int(data["roller_id"]), stored.ts),
    )


def session_interrupted(
    conn: sqlite3.Connection, no: int, summary: Mapping[str, Any], ended_wall: float | None
) -> None:
    """A session a crash left open, closed ``interrupted`` with its recovered summary."""
    conn.execute(
        "UPDATE sessions SET status = 'interrupted', ended_at = ?, ended_wall = ?, "
        "duration_s = ?, contact_s = ?, peak_n = ?, mean_n = ?, over_episodes = ?, "
        "longest_over_s = ?, end_reason = 'interrupted', summary = ? "
        "WHERE session_no = ?",
        (
            summary["ended_at"],
            ended_wall,
            summary["duration_s"],
            summary["contact_s"],
            summary["peak_n"],
            summary["mean_n"],
            summary["over_episodes"],
            summary["longest_over_s"],
            dumps(summary),
            no,
        ),
    )


Projection = Callable[[sqlite3.Connection, Mapping[str, Any], StoredEvent, float], None]
#: The projections of the events other than a session's start and end (those the writer runs
#: itself, as they also open and close the session's trace).
BY_TYPE: Mapping[str, Projection] = {
    EventType.STERILIZATION_STARTED: cycle_started,
    EventType.STERILIZATION_COMPLETED: cycle_ended,
    EventType.STERILIZATION_ABORTED: cycle_ended,
    EventType.NEW_ROLLER: roller_added,
}
