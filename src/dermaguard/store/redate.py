"""Dating again what was recorded before the clock was synchronised (a Pi has no real-time clock).

Events carry the monotonic time they happened at (``t_mono``) and the kernel boot they
happened in (``boot_id``). Once the clock is synchronised, ``wall - t`` of that moment turns
any monotonic time of the same boot into the true wall time, so each event of this boot stored
with ``clock_synced = 0`` gets its true ``wall`` and ``ts``, and so do the sessions and UV-C
cycles they made. So do this boot's events stored before the clock's state was first known
(``clock_synced`` null: ``daemon_started`` comes before the first report): a sync that dates
guesses again follows a report of no sync, so it came after them. Guesses from earlier boots
cannot be dated (their monotonic clock is gone): they keep ``clock_synced = 0``, and a session
among them keeps ``clock_synced: false`` in its summary, which makes the next rest unknown
rather than wrong.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import EventType
from dermaguard.store.codec import dumps, loads

_CYCLE_START = EventType.STERILIZATION_STARTED
_CYCLE_ENDS = (EventType.STERILIZATION_COMPLETED, EventType.STERILIZATION_ABORTED)


def redate_boot(conn: sqlite3.Connection, boot_id: str, offset: float) -> int:
    """Date again this boot's guessed events (``wall = t_mono + offset``) and their records,
    inside the caller's transaction; returns how many events changed."""
    rows = conn.execute(
        "SELECT seq, type, t_mono, data FROM events "
        "WHERE boot_id = ? AND (clock_synced = 0 OR clock_synced IS NULL) "
        "AND t_mono IS NOT NULL ORDER BY seq",
        (boot_id,),
    ).fetchall()
    for row in rows:
        wall = float(row["t_mono"]) + offset
        ts = iso_utc(wall)
        data = loads(row["data"])
        etype = row["type"]
        if etype == EventType.SESSION_STARTED:
            _session_started(conn, int(row["seq"]), data, offset)
        elif etype == EventType.SESSION_ENDED:
            _session_ended(conn, data, float(row["t_mono"]), offset)
        elif etype == _CYCLE_START and "cycle_id" in data:
            conn.execute(
                "UPDATE cycles SET started_at = ? WHERE cycle_id = ?", (ts, data["cycle_id"])
            )
        elif etype in _CYCLE_ENDS and "cycle_id" in data:
            conn.execute(
                "UPDATE cycles SET ended_at = ? WHERE cycle_id = ?", (ts, data["cycle_id"])
            )
        conn.execute(
            "UPDATE events SET wall = ?, ts = ?, data = ?, clock_synced = 1 WHERE seq = ?",
            (wall, ts, dumps(data), row["seq"]),
        )
    return len(rows)


def _session_started(
    conn: sqlite3.Connection, seq: int, data: dict[str, Any], offset: float
) -> None:
    t_start = data.get("t_start")
    row = conn.execute(
        "SELECT session_no, t0_mono, status, summary FROM sessions WHERE start_seq = ?", (seq,)
    ).fetchone()
    t0 = t_start if isinstance(t_start, int | float) else None
    if t0 is None and row is not None and row["t0_mono"] is not None:
        t0 = float(row["t0_mono"])
    if t0 is None:
        return
    started = float(t0) + offset
    data["started_at"] = iso_utc(started)
    data.pop("clock_synced", None)
    if row is not None and row["status"] == "open":
        summary = loads(row["summary"])
        summary["started_at"] = data["started_at"]
        summary.pop("clock_synced", None)
        conn.execute(
            "UPDATE sessions SET started_at = ?, started_wall = ?, summary = ? "
            "WHERE session_no = ?",
            (data["started_at"], started, dumps(summary), row["session_no"]),
        )


def _session_ended(
    conn: sqlite3.Connection, data: dict[str, Any], t_end: float, offset: float
) -> None:
    ended = t_end + offset
    duration = data.get("duration_s")
    data["ended_at"] = iso_utc(ended)
    if isinstance(duration, int | float):
        data["started_at"] = iso_utc(ended - float(duration))
    data.pop("clock_synced", None)
    no = data.get("session_no")
    if not isinstance(no, int):
        return
    started = ended - float(duration) if isinstance(duration, int | float) else None
    conn.execute(
        "UPDATE sessions SET ended_at = ?, ended_wall = ?, "
        "started_at = COALESCE(?, started_at), started_wall = COALESCE(?, started_wall), "
        "summary = ? WHERE session_no = ?",
        (
            data["ended_at"],
            ended,
            None if started is None else data["started_at"],
            started,
            dumps(data),
            no,
        ),
    )
