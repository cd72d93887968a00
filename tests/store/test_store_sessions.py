"""Sessions, cycles, rollers and the event log, fed through the sink as the engine would."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from store_helpers import WALL0, FakeWall, ended, ended_data, ev, samples, started

from dermaguard.core.events import Effect, EmitEvent, Event, ForceSample, SetUv, ShowIndicators
from dermaguard.store import Store, StoredEvent, StoreSink, open_readonly, writer


class Recorder:
    def __init__(self) -> None:
        self.stored: list[tuple[Event, StoredEvent]] = []

    def __call__(self, event: Event, stored: StoredEvent) -> None:
        self.stored.append((event, stored))


def feed(sink: StoreSink, wall: FakeWall, effects: list[Effect]) -> None:
    for effect in effects:
        if isinstance(effect, EmitEvent | ForceSample):
            wall.at(effect.event.t if isinstance(effect, EmitEvent) else effect.t)
        sink(effect)


def run_sessions(db_path: Path, effects: list[Effect]) -> list[tuple[Event, StoredEvent]]:
    wall, rec = FakeWall(), Recorder()
    sink = StoreSink(Store.open(db_path, "dg-1"), wall, on_stored=rec)
    feed(sink, wall, effects)
    assert sink.flush(10.0)
    assert sink.close()
    return rec.stored


def test_session_lifecycle(db_path: Path) -> None:
    effects: list[Effect] = [
        ev("daemon_started", 0.0),
        ShowIndicators("none", None, None),  # not for the store
        ev("sterilization_started", 1.0, cycle_id=7, mode="time", length_s=600.0),
        SetUv(True),
        ev("sterilization_completed", 601.0, cycle_id=7, duration_s=600.0),
        started(1, 700.0),
        *samples(700.0, 710.0),
        ev("over_pressure", 705.0, force_n=4.8, limit_n=4.5),
        ev("over_pressure_cleared", 706.0, duration_s=1.0, peak_n=5.0, cause="force_dropped"),
        *samples(710.0, 720.0),
        ended(1, 700.0, 720.0, over_episodes=1, longest_over_s=1.0, peak_n=5.0),
        ev("sterilization_started", 800.0, cycle_id=8, mode="time", length_s=600.0),
        ev("sterilization_aborted", 830.0, cycle_id=8, reason="lid_opened", after_s=30.0),
        started(2, 900.0),
        *samples(900.0, 905.0),
    ]
    stored = run_sessions(db_path, effects)
    assert [e.type for e, _ in stored] == [
        e.event.type for e in effects if isinstance(e, EmitEvent)
    ]
    with open_readonly(db_path) as db:
        first, second = db.session(1), db.session(2)
        assert first is not None and second is not None
        assert first["status"] == "completed"
        assert first == {
            **ended_data(1, 700.0, 720.0, over_episodes=1, longest_over_s=1.0, peak_n=5.0),
            "status": "completed",
            "technique": None,  # these summaries carry none: unknown
            "started_wall": WALL0 + 700.0,
            "ended_wall": WALL0 + 720.0,
        }
        assert second["status"] == "open"
        assert second["sterile_at_start"] is True
        assert [s["session_no"] for s in db.recent_sessions(10)] == [2, 1]
        assert [s["session_no"] for s in db.recent_sessions(1)] == [2]
        last = db.last_session()
        assert last is not None and last["session_no"] == 1
        assert last["ended_wall"] == WALL0 + 720.0
        assert db.last_session_no() == 2
        assert len(db.trace(1)) == 200
        assert len(db.trace(2)) == 50  # flushed by flush()
        row = db.conn.execute("SELECT * FROM sessions WHERE session_no = 1").fetchone()
        assert (row["duration_s"], row["peak_n"], row["over_episodes"]) == (20.0, 5.0, 1)
        assert (row["cycle_id"], row["sterile_at_start"], row["end_reason"]) == (7, 1, "docked")
        cycles = db.cycles()
        assert [(c["cycle_id"], c["outcome"], c["reason"]) for c in cycles] == [
            (8, "aborted", "lid_opened"),
            (7, "completed", None),
        ]
        assert cycles[1]["duration_s"] == 600.0 and cycles[0]["duration_s"] == 30.0
        assert cycles[1]["mode"] == "time"  # the start event's details are kept
        assert db.last_cycle_id() == 8
        assert db.rollers() == [
            {"roller_id": 1, "installed_at": "2025-11-25T19:02:03.000Z", "uses": 2}
        ]


def test_events_are_the_envelope_with_strictly_increasing_seq(db_path: Path) -> None:
    effects: list[Effect] = [ev("command_result", float(i), request_id=str(i)) for i in range(50)]
    stored = run_sessions(db_path, effects)
    seqs = [s.seq for _, s in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    assert len({s.id for _, s in stored}) == 50
    with open_readonly(db_path) as db:
        events = db.events()
        assert [e["seq"] for e in events] == seqs
        assert [e["id"] for e in events] == [s.id for _, s in stored]
        assert {e["device"] for e in events} == {"dg-1"}
        assert events[3]["ts"] == "2025-11-25T18:50:26.000Z"
        assert events[3]["data"] == {"request_id": "3"}
        assert [e["seq"] for e in db.events(since_seq=seqs[47])] == seqs[48:]
        assert len(db.events(limit=5)) == 5


def test_odd_data_is_stored_as_json(store: Store) -> None:
    stored = store.append_event(
        Event("sensor_fault", 1.0, {"x": float("nan"), "y": [float("inf")], "z": Path("/a")}),
        WALL0,
    )
    (event,) = store.events()
    assert event["seq"] == stored.seq
    assert event["data"] == {"x": None, "y": [None], "z": "/a"}


def test_a_bad_projection_still_stores_the_event(store: Store) -> None:
    store.append_event(started(1, 0.0).event, WALL0)
    store.append_event(started(1, 5.0).event, WALL0 + 5)  # duplicate number: a core bug
    store.append_event(Event("sterilization_completed", 6.0, {"no_cycle_id": 1}), WALL0 + 6)
    assert [e["type"] for e in store.events()] == [
        "session_started",
        "session_started",
        "sterilization_completed",
    ]
    assert store.recent_sessions()[0]["started_at"] == "2025-11-25T18:50:23.000Z"
    assert store.open_session is None  # the duplicate gets no trace


def test_session_end_without_a_stored_start(store: Store) -> None:
    store.append_event(ended(4, 10.0, 70.0).event, WALL0 + 70)
    session = store.session(4)
    assert session is not None
    assert session["status"] == "completed"
    assert session["started_wall"] == WALL0 + 10.0


def test_rollers(store: Store) -> None:
    assert store.current_roller() == (1, 0)  # made on first use
    assert store.current_roller(WALL0) == (1, 0)
    assert store.rollers()[0]["installed_at"] is None
    store.append_event(started(1, 0.0).event, WALL0)
    assert store.current_roller() == (1, 1)
    assert store.new_roller(WALL0 + 100) == 2
    assert store.current_roller() == (2, 0)
    store.append_event(Event("new_roller", 200.0, {"roller_id": 3}), WALL0 + 200)
    store.append_event(Event("new_roller", 201.0, {"roller_id": 3}), WALL0 + 201)  # no-op
    assert store.current_roller() == (3, 0)
    assert [r["installed_at"] for r in store.rollers()][1:] == [
        "2025-11-25T18:52:03.000Z",
        "2025-11-25T18:53:43.000Z",
    ]


def test_outbox_marks(db_path: Path) -> None:
    wall, rec = FakeWall(), Recorder()
    sink = StoreSink(Store.open(db_path, "dg-1"), wall, on_stored=rec)
    for i in range(5):
        sink(ev("command_result", float(i)))
    assert sink.flush(10.0)
    sink.mark_delivered([rec.stored[0][1].seq, rec.stored[2][1].seq])
    assert sink.flush(10.0)  # flush() writes deferred marks too
    with open_readonly(db_path) as db:
        assert [e["seq"] for e in db.undelivered()] == [2, 4, 5]
    assert sink.close()


def test_outbox_marks_are_written_within_marks_flush_s(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "MARKS_FLUSH_S", 0.0)
    monkeypatch.setattr(writer, "IDLE_WAKE_S", 0.01)
    store = Store.open(db_path, "dg-1")
    rec = Recorder()
    sink = StoreSink(store, FakeWall(), on_stored=rec)
    sink(ev("command_result", 0.0))
    assert sink.flush(10.0)
    committed = threading.Event()
    original = store.flush

    def flush_spy() -> int:
        written = original()
        committed.set()
        return written

    monkeypatch.setattr(store, "flush", flush_spy)
    sink.mark_delivered([1])
    assert committed.wait(10.0)  # the writer's own timer, not a flush() call
    with open_readonly(db_path) as db:
        assert db.undelivered() == []
    assert sink.close()


def test_call_never_blocks_and_full_queue_drops_samples_not_events(db_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(event: Event, _stored: StoredEvent) -> None:
        if event.type == "daemon_started":
            entered.set()
            release.wait(30.0)  # the writer is stuck (a slow card, say)

    wall = FakeWall()
    sink = StoreSink(Store.open(db_path, "dg-1"), wall, on_stored=slow, queue_samples=100)
    try:
        sink(ev("daemon_started", 0.0))
        assert entered.wait(10.0)
        sink(started(1, 1.0))
        start = time.perf_counter()
        for s in samples(1.0, 11.0):  # 800 samples while the writer is stuck
            sink(s)
        sink(ev("over_pressure", 11.0, force_n=5.0))
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0
        assert sink.dropped_samples == 700
    finally:
        release.set()
    assert sink.flush(10.0)
    assert sink.close()
    with open_readonly(db_path) as db:
        assert [e["type"] for e in db.events()] == [
            "daemon_started",
            "session_started",
            "over_pressure",
        ]
        assert len(db.trace(1)) == 13  # 100 kept samples over 1.25 s, at 10 Hz


def test_effects_after_close_are_refused(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = StoreSink(Store.open(db_path, "dg-1"), FakeWall())
    assert sink.close()
    sink(ev("daemon_stopping", 0.0))
    sink(ForceSample(0.0, 1.0, "ok"))
    assert not sink.flush(0.1)
    assert "after the store closed" in caplog.text


def test_on_stored_failure_does_not_stop_the_writer(db_path: Path) -> None:
    seen: list[int] = []

    def flaky(_event: Event, stored: StoredEvent) -> Any:
        seen.append(stored.seq)
        if stored.seq == 1:
            raise RuntimeError("publisher bug")

    sink = StoreSink(Store.open(db_path, "dg-1"), FakeWall(), on_stored=flaky)
    sink(ev("a", 0.0))
    sink(ev("b", 1.0))
    assert sink.flush(10.0)
    assert sink.close()
    assert seen == [1, 2]


def test_flush_from_the_writers_own_callback_is_refused(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink: StoreSink | None = None

    def reentrant(_event: Event, _stored: StoredEvent) -> None:
        assert sink is not None
        sink.flush(30.0)  # would wait for itself: refused at once

    sink = StoreSink(Store.open(db_path, "dg-1"), FakeWall(), on_stored=reentrant)
    sink(ev("a", 0.0))
    assert sink.flush(10.0)
    assert sink.close()
    assert "would wait for itself" in caplog.text
