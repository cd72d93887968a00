"""Sessions left open by a crash: the summary recovered from disk, and a real SIGKILL."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from store_helpers import WALL0, ended_data, started, started_data

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import Event
from dermaguard.store import Store


def test_close_interrupted_recovers_the_summary(store: Store) -> None:
    store.append_event(Event("sterilization_started", 0.0, {"cycle_id": 3}), WALL0)
    store.append_event(
        Event("sterilization_completed", 600.0, {"cycle_id": 3, "duration_s": 600}), WALL0 + 600
    )
    store.append_event(Event("sterilization_started", 650.0, {"cycle_id": 4}), WALL0 + 650)
    store.append_event(started(1, 1000.0).event, WALL0 + 1000)
    # 30 s of trace at 10 Hz: light, then ok at 2 N, an over episode at 5 N, unknown for 1 s.
    for i in range(300):
        t = 1000.0 + i / 10
        if i < 50:
            force, zone = 0.5, "light"
        elif 100 <= i < 120:
            force, zone = 5.0, "over"
        elif 200 <= i < 210:
            force, zone = None, None
        else:
            force, zone = 2.0, "ok"
        store.add_trace(t, force, zone)
    store.append_event(Event("over_pressure", 1010.0, {"force_n": 4.8}), WALL0 + 1010)
    store.append_event(
        Event("over_pressure_cleared", 1012.0, {"duration_s": 2.0, "peak_n": 5.0}), WALL0 + 1012
    )
    store.append_event(Event("over_pressure", 1035.0, {"force_n": 4.9}), WALL0 + 1035)  # open
    store.flush()
    # The crash: this process's memory of the open session is gone.
    store.conn.close()
    store = Store.open(store.path, "dg-test")
    try:
        assert store.close_interrupted(WALL0 + 5000, t=3.0) == [1]
        assert store.close_interrupted(WALL0 + 5000) == []  # once only
        session = store.session(1)
        assert session is not None
        assert session["status"] == "interrupted"
        assert session["end_reason"] == "interrupted"
        # Ends at the last thing stored: the over_pressure event at 35 s (trace ends at 29.9).
        assert session["duration_s"] == 35.0
        assert session["ended_at"] == iso_utc(WALL0 + 1035)
        assert session["ended_wall"] == WALL0 + 1035
        assert session["peak_n"] == 5.0
        assert session["over_episodes"] == 2
        assert session["longest_over_s"] == 2.0
        # Contact from the trace: 29 s minus the unknown second (and the gap after it).
        assert session["contact_s"] == pytest.approx(28.9, abs=0.05)
        assert session["zone_s"] == pytest.approx(
            {"light": 5.0, "ok": 21.9, "high": 0.0, "over": 2.0}, abs=0.05
        )
        assert session["mean_n"] == pytest.approx((0.5 * 5 + 5.0 * 2 + 2.0 * 21.9) / 28.9, 0.01)
        for key in ("sterile_at_start", "cycle_id", "roller_id", "roller_use", "too_soon"):
            assert session[key] == ended_data(1, 0, 1)[key]
        last = store.events(limit=10_000)[-2:]
        assert [e["type"] for e in last] == ["session_ended", "sterilization_aborted"]
        assert last[0]["data"]["end_reason"] == "interrupted"
        assert last[0]["ts"] == iso_utc(WALL0 + 5000) and last[0]["t_mono"] == 3.0
        assert last[1]["data"]["reason"] == "interrupted"
        cycles = {c["cycle_id"]: c for c in store.cycles()}
        assert cycles[3]["outcome"] == "completed"
        assert (cycles[4]["outcome"], cycles[4]["reason"]) == ("aborted", "interrupted")
        # It ends at the last sign of life (the event at 1035 s), not at this start.
        assert cycles[4]["ended_at"] == iso_utc(WALL0 + 1035)
        assert cycles[4]["duration_s"] == 385.0
        last_session = store.last_session()
        assert last_session is not None and last_session["session_no"] == 1
    finally:
        store.close()


def test_an_interrupted_cycle_never_ends_before_it_started(store: Store) -> None:
    """A simulation's clock ran ahead of the next start's: the end is still after the start."""
    store.append_event(Event("sterilization_started", 0.0, {"cycle_id": 1}), WALL0 + 900)
    store.conn.close()
    store = Store.open(store.path, "dg-test")
    try:
        store.close_interrupted(WALL0)
        (cycle,) = store.cycles()
        assert cycle["ended_at"] == cycle["started_at"] == iso_utc(WALL0 + 900)
        assert cycle["duration_s"] == 0.0
    finally:
        store.close()


def test_close_interrupted_without_trace_or_events(store: Store) -> None:
    store.append_event(started(2, 50.0).event, WALL0 + 50)
    store.conn.close()
    store = Store.open(store.path, "dg-test")
    try:
        assert store.close_interrupted(WALL0 + 60) == [2]
        session = store.session(2)
        assert session is not None
        assert (session["duration_s"], session["peak_n"], session["mean_n"]) == (0.0, None, None)
        assert session["ended_at"] == session["started_at"]
    finally:
        store.close()


def test_close_interrupted_leaves_the_live_session_alone(store: Store) -> None:
    store.append_event(started(1, 0.0).event, WALL0)
    store.add_trace(0.5, 1.0, "ok")
    assert store.close_interrupted(WALL0 + 1) == []
    session = store.session(1)
    assert session is not None and session["status"] == "open"


def test_events_of_a_later_daemon_do_not_count(store: Store) -> None:
    store.append_event(started(1, 0.0).event, WALL0)
    store.append_event(Event("over_pressure", 2.0, {}), WALL0 + 2)
    store.append_event(Event("daemon_started", 100.0), WALL0 + 3600)
    store.append_event(Event("over_pressure", 200.0, {}), WALL0 + 3700)
    store.conn.close()
    store = Store.open(store.path, "dg-test")
    try:
        store.close_interrupted(WALL0 + 3800)
        session = store.session(1)
        assert session is not None
        assert (session["over_episodes"], session["duration_s"]) == (1, 2.0)
    finally:
        store.close()


# --- a real crash -----------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from dermaguard.core.events import EmitEvent, Event, ForceSample
    from dermaguard.store import Store, StoreSink

    sys.path.insert(0, sys.argv[2])
    from store_helpers import WALL0, ended_data, started_data

    now = 0.0
    sink = StoreSink(
        Store.open(Path(sys.argv[1]), "dg-kill", trace_flush_s=1.0), lambda: WALL0 + now
    )

    def emit(etype, t, data):
        global now
        now = t
        sink(EmitEvent(Event(etype, t, data)))

    def roll(t0, seconds):
        global now
        for i in range(int(seconds * 80)):
            now = t0 + i / 80
            sink(ForceSample(now, 2.0 + (i % 80) / 100, "ok"))

    emit("daemon_started", 0.0, {})
    for no in (1, 2, 3):
        t0 = no * 100.0
        emit("session_started", t0, started_data(no, t0))
        roll(t0, 5.0)
        emit("over_pressure", t0 + 5, {"force_n": 4.7})
        emit("over_pressure_cleared", t0 + 5.5, {"duration_s": 0.5})
        emit("session_ended", t0 + 6, ended_data(no, t0, t0 + 6))
    emit("session_started", 400.0, started_data(4, 400.0))
    roll(400.0, 5.0)
    emit("over_pressure", 405.0, {"force_n": 4.7})
    assert sink.flush(30.0)
    print("READY", flush=True)
    t, tick = 405.0, 0
    while True:  # keep writing until killed: samples, events, and a flush now and then
        roll(t, 1.0)
        t += 1.0
        tick += 1
        emit("over_pressure_cleared" if tick % 2 else "over_pressure", t, {"tick": tick})
        if tick % 3 == 0:
            sink.flush(30.0)
        print(f"TICK {tick}", flush=True)
    """
)


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return out


@pytest.mark.parametrize("ticks", [0, 2, 7])
def test_sigkill_mid_session_loses_nothing_committed(tmp_path: Path, ticks: int) -> None:
    db_path = tmp_path / "history.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(proc)
        assert lines.get(timeout=60) == "READY"
        for _ in range(ticks):
            assert lines.get(timeout=60).startswith("TICK")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = Store.open(db_path, "dg-kill")
    try:
        for no in (1, 2, 3):
            session = store.session(no)
            assert session is not None
            assert session["status"] == "completed"
            t0 = no * 100.0
            assert {k: session[k] for k in ended_data(no, t0, t0 + 6)} == ended_data(no, t0, t0 + 6)
            trace = store.trace(no)
            assert len(trace) == 50
            assert trace[0] == (0.0, 2.0, "ok")
        open_session = store.session(4)
        assert open_session is not None and open_session["status"] == "open"
        assert store.close_interrupted(WALL0 + 10_000) == [4]
        session = store.session(4)
        assert session is not None
        assert session["status"] == "interrupted"
        assert session["duration_s"] >= 5.0 + ticks // 3 * 3 - 0.2  # up to the last flush
        assert session["over_episodes"] >= 1
        assert session["started_at"] == started_data(4, 400.0)["started_at"]
        assert len(store.trace(4)) >= 45
        events = store.events(limit=100_000)
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs))
        assert len({e["id"] for e in events}) == len(events)
        types = [e["type"] for e in events]
        per_session = ["session_started", "over_pressure", "over_pressure_cleared", "session_ended"]
        assert types[:15] == [
            "daemon_started",
            *per_session * 3,
            "session_started",
            "over_pressure",
        ]
        assert types[-1] == "session_ended" and events[-1]["data"]["end_reason"] == "interrupted"
    finally:
        store.close()


def test_last_event_wall_is_the_newest_stored_moment(store: Store) -> None:
    """A simulation resumes its calendar after it, never before an earlier run's last record."""
    assert store.last_event_wall() is None
    store.append_event(started(1, 10.0).event, WALL0 + 10)
    store.append_event(Event("daemon_stopping", 12.0, {}), WALL0 + 12.5)
    assert store.last_event_wall() == WALL0 + 12.5
