"""Records made before the clock was synchronised get their true times once it is (same boot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from store_helpers import ended_data, started_data

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import Event
from dermaguard.store import Store, open_readonly

TRUE0 = 1_790_000_000.0  # the real time at monotonic 0
GUESS = -3 * 86_400.0  # the unsynchronised clock: fake-hwclock's save, three days behind


def put(store: Store, etype: str, t: float, wall: float, **data: Any) -> None:
    store.append_event(Event(etype, t, data), wall)  # type: ignore[arg-type]


def record_a_session_on_a_guessed_clock(store: Store, t0: float, guess: float = GUESS) -> None:
    """A cycle and a session recorded while the clock reads ``guess`` off."""

    def at(t: float) -> float:
        return TRUE0 + guess + t

    put(store, "clock_sync", t0, at(t0), synced=False)
    put(store, "sterilization_started", t0 + 1, at(t0 + 1), cycle_id=1, mode="time")
    put(store, "sterilization_completed", t0 + 11, at(t0 + 11), cycle_id=1, duration_s=10.0)
    start = started_data(1, t0 + 20, clock_synced=False)
    start["started_at"], start["t_start"] = iso_utc(at(t0 + 20)), t0 + 20
    put(store, "session_started", t0 + 21, at(t0 + 21), **start)
    end = ended_data(1, t0 + 20, t0 + 80, clock_synced=False)
    end["started_at"], end["ended_at"] = iso_utc(at(t0 + 20)), iso_utc(at(t0 + 80))
    put(store, "session_ended", t0 + 80, at(t0 + 80), **end)


@pytest.mark.parametrize("guess", [GUESS, -TRUE0], ids=["days-behind", "1970"])
def test_a_sync_in_the_same_boot_dates_the_guesses_again(db_path: Path, guess: float) -> None:
    store = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    record_a_session_on_a_guessed_clock(store, 100.0, guess)
    put(store, "clock_sync", 500.0, TRUE0 + 500.0, synced=True)  # NTP: the true time now
    store.close()
    with open_readonly(db_path) as db:
        events = db.events()
        assert [e["ts"] for e in events] == [iso_utc(TRUE0 + e["t_mono"]) for e in events]
        flags = db.conn.execute("SELECT clock_synced, boot_id FROM events").fetchall()
        assert {tuple(r) for r in flags} == {(1, "boot-1")}
        session = db.session(1)
        assert session is not None
        assert session["started_at"] == iso_utc(TRUE0 + 120.0)
        assert session["ended_at"] == iso_utc(TRUE0 + 180.0)
        assert session["ended_wall"] == TRUE0 + 180.0
        assert "clock_synced" not in session  # its times are true now: the next rest counts
        assert db.last_session() == session
        [cycle] = db.cycles()
        assert cycle["started_at"] == iso_utc(TRUE0 + 101.0)
        assert cycle["ended_at"] == iso_utc(TRUE0 + 111.0)


def test_the_events_before_the_first_report_of_the_clock_are_dated_again_too(
    db_path: Path,
) -> None:
    """``daemon_started`` is stored before the clock's state is first reported: it too was
    made on the guessed clock, and a later sync in the same boot dates it truly."""
    store = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    put(store, "daemon_started", 0.5, TRUE0 + GUESS + 0.5)
    record_a_session_on_a_guessed_clock(store, 100.0)
    put(store, "clock_sync", 500.0, TRUE0 + 500.0, synced=True)
    store.close()
    with open_readonly(db_path) as db:
        [started] = [e for e in db.events() if e["type"] == "daemon_started"]
        assert started["ts"] == iso_utc(TRUE0 + 0.5)
        flags = db.conn.execute("SELECT clock_synced FROM events").fetchall()
        assert {r[0] for r in flags} == {1}


def test_a_clock_synchronised_from_its_first_report_dates_nothing_again(db_path: Path) -> None:
    store = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    put(store, "daemon_started", 0.5, TRUE0 + 0.5)
    put(store, "clock_sync", 1.0, TRUE0 + 1.0, synced=True)
    put(store, "clock_sync", 50.0, TRUE0 + 70.0, synced=True)  # a later step changes nothing
    store.close()
    with open_readonly(db_path) as db:
        first = db.events()[0]
        assert (first["type"], first["ts"]) == ("daemon_started", iso_utc(TRUE0 + 0.5))


def test_guesses_from_an_earlier_boot_stay_marked(db_path: Path) -> None:
    before = Store.open(db_path, "dg-1", boot=lambda: "boot-0")
    record_a_session_on_a_guessed_clock(before, 100.0)
    before.close()  # the power went before the clock was ever synchronised
    store = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    put(store, "clock_sync", 5.0, TRUE0 + GUESS + 5.0, synced=False)
    put(store, "clock_sync", 50.0, TRUE0 + 50.0, synced=True)
    store.close()
    with open_readonly(db_path) as db:
        session = db.session(1)
        assert session is not None
        assert session["clock_synced"] is False  # the next rest is unknown, not a guess
        assert session["ended_at"] == iso_utc(TRUE0 + GUESS + 180.0)
        old = db.conn.execute(
            "SELECT COUNT(*) FROM events WHERE boot_id = 'boot-0' AND clock_synced = 0"
        ).fetchone()[0]
        assert old == 5
        new = db.events()[-2:]
        assert [e["ts"] for e in new] == [iso_utc(TRUE0 + 5.0), iso_utc(TRUE0 + 50.0)]
