"""Event sequence numbers that are never used twice, even when the card loses the last commits.

``events.seq`` orders the event log, and MQTT consumers order by it (docs/MQTT.md). Taking
``max(seq) + 1`` is not enough: a power cut can cost the history its last commits — with
``synchronous=FULL`` only a transaction in progress, but an SD card that acknowledges writes
from a volatile cache can lose more — and the next events would repeat the lost numbers with
new ids, which consumers that already saw them could not tell apart. So numbers are reserved
ahead of use in ``seq_reserve`` (one row):

- Opening the history for writing (:func:`open_run`) commits, before any event, a ``floor``
  above every number an earlier opening may have used, and a reservation ``RESERVE`` beyond it.
  After a new boot the floor is the old reservation (what the card may have lost lies below
  it); in the same boot nothing can have been lost (the kernel held what had not reached the
  card), so numbering goes on from ``max(seq)`` (or the last floor) without a gap.
- Each event (:func:`take`) gets ``max(max(seq), floor) + 1``; when fewer than half of
  ``RESERVE`` reserved numbers remain, its transaction reserves further. Every number is thus
  covered by a reservation committed at least ``RESERVE // 2`` events before it is used.
- A clean close (:func:`release`) hands back the unused numbers, so a restart, even after a
  reboot, goes on without a gap. Gaps in ``seq`` therefore mark a start after a power cut.

Every function runs inside the caller's write transaction.
"""

from __future__ import annotations

import sqlite3

#: Numbers reserved ahead of use; a start after a power cut skips at most this many.
RESERVE = 100

_READ = (
    "SELECT (SELECT MAX(seq) FROM events) AS top, floor, reserved, boot_id "
    "FROM seq_reserve WHERE id = 1"
)


def _state(conn: sqlite3.Connection) -> tuple[int, int, int, str | None]:
    top, floor, reserved, boot = conn.execute(_READ).fetchone()
    return int(top or 0), int(floor), int(reserved), boot


def open_run(conn: sqlite3.Connection, boot_id: str | None) -> int:
    """Set the floor and reserve numbers for a new opening; returns the floor.

    ``boot_id`` is this boot's (``None``: unknown, counted as a new boot).
    """
    top, floor, reserved, last_boot = _state(conn)
    same_boot = boot_id is not None and boot_id == last_boot
    # In the same boot only what an earlier floor skipped may be lost; after a new boot,
    # anything up to the reservation may have been used and lost.
    floor = max(top, floor) if same_boot else max(top, floor, reserved)
    conn.execute(
        "UPDATE seq_reserve SET floor = ?, reserved = ?, boot_id = ? WHERE id = 1",
        (floor, max(reserved, floor + RESERVE), boot_id),
    )
    return floor


def take(conn: sqlite3.Connection) -> int:
    """The next event's number, reserving further when the reservation runs low."""
    top, floor, reserved, _ = _state(conn)
    seq = max(top, floor) + 1
    if seq > reserved - RESERVE // 2:
        conn.execute("UPDATE seq_reserve SET reserved = ? WHERE id = 1", (seq + RESERVE,))
    return seq


def release(conn: sqlite3.Connection) -> None:
    """Hand back the numbers reserved but not used (a clean close)."""
    top, floor, _, _ = _state(conn)
    conn.execute("UPDATE seq_reserve SET reserved = ? WHERE id = 1", (max(top, floor),))
