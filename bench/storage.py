"""SQLite store benchmark: what an hour of rolling writes, and how fast a session is committed.

Prints one ``name: value unit`` line per figure. ``--quick`` keeps it under 30 s.

- One hour of rolling at 80 samples/s through the :class:`StoreSink`, in virtual time (the
  samples' ``t`` values, fed as fast as the writer takes them): six 10-minute sessions with
  many over-pressure episodes (``storage_hour_*``) or few (``storage_hour_calm_*``), a
  sterilization cycle before each, and every event marked delivered right after it is stored,
  as the MQTT outbox will on each PUBACK. Bytes written are read from
  ``/proc/self/io``: ``wchar`` (what SQLite handed the kernel: WAL appends, checkpoints) and
  ``write_bytes`` (what the kernel sent towards the block device; 0 on tmpfs), from before the
  first event to after the store is closed (the final checkpoint included). The issue's target
  is at most 5 MB written per hour of rolling.
- Session summary commit: from ``session_ended`` handed to the sink (on the engine thread) to
  the event committed (the ``on_stored`` hook on the writer thread), median and p99 in ms,
  over sessions of 2 s each; the commit carries the session's last trace chunk.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import EmitEvent, Event, ForceSample, Zone
from dermaguard.store import Store, StoredEvent, StoreSink
from figures import line, pct

RATE = 80
WALL0 = 1_764_096_623.0
TARGET_MB_PER_HOUR = 5.0


def proc_io() -> dict[str, int]:
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (row.split(": ") for row in text.splitlines())}


def force_at(t: float, over_every_s: float = 120.0) -> tuple[float | None, Zone | None]:
    """A plausible rolling pattern: strokes of ~1 s, too firm for 3 s every ``over_every_s``
    (an over-pressure episode per stroke), a gap in contact between strokes."""
    phase = t % 1.0
    if phase > 0.85:
        return 0.1, "none"
    f = 1.8 + 0.8 * math.sin(math.pi * phase / 0.85) + (2.2 if t % over_every_s < 3 else 0.0)
    if t % 300 < 0.05:
        return None, None  # a dropped conversion now and then
    zone: Zone = "light" if f < 1.0 else "ok" if f < 3.0 else "high" if f < 4.5 else "over"
    return f, zone


def session_events(no: int, t0: float, t1: float, cycle: int) -> tuple[Event, Event]:
    start = Event(
        "session_started",
        t0,
        {
            "session_no": no,
            "started_at": iso_utc(WALL0 + t0),
            "sterile": True,
            "cycle_id": cycle,
            "rest_interval_s": None if no == 1 else 600.0,
            "too_soon": no > 1,
            "roller_id": 1,
            "roller_use": no,
        },
    )
    end = Event(
        "session_ended",
        t1,
        {
            "session_no": no,
            "started_at": iso_utc(WALL0 + t0),
            "ended_at": iso_utc(WALL0 + t1),
            "duration_s": round(t1 - t0, 2),
            "contact_s": round(0.85 * (t1 - t0), 2),
            "zone_s": {"light": 1.0, "ok": 400.0, "high": 80.0, "over": 9.0},
            "peak_n": 4.9,
            "mean_n": 2.3,
            "over_episodes": 3,
            "longest_over_s": 1.2,
            "sterile_at_start": True,
            "cycle_id": cycle,
            "rest_interval_s": None if no == 1 else 600.0,
            "too_soon": no > 1,
            "roller_id": 1,
            "roller_use": no,
            "end_reason": "docked",
        },
    )
    return start, end


def bench_hour(
    workdir: Path,
    name: str,
    over_every_s: float,
    *,
    detail: bool = True,
    sessions: int = 6,
    session_s: float = 600.0,
) -> None:
    path = workdir / f"{name}.db"
    now = [0.0]
    store = Store.open(path, "bench")
    sink: StoreSink

    committed = threading.Event()

    def acked(_event: Event, stored: StoredEvent) -> None:
        sink.mark_delivered([stored.seq])  # the broker's PUBACK, as soon as possible
        committed.set()

    sink = StoreSink(store, lambda: WALL0 + now[0], on_stored=acked, queue_samples=10_000_000)
    before = proc_io()
    started = time.perf_counter()
    t, fed, events = 0.0, 0, 0

    def emit(event: Event) -> None:
        # Virtual time runs far ahead of the writer; waiting for each (rare) event to commit
        # keeps the order of writes as in real time, where the PUBACK precedes later samples.
        nonlocal events
        now[0] = event.t
        committed.clear()
        sink(EmitEvent(event))
        if not committed.wait(30.0):
            raise RuntimeError("the writer stalled")
        events += 1

    for no in range(1, sessions + 1):
        emit(Event("sterilization_started", t, {"cycle_id": no, "mode": "time"}))
        emit(Event("sterilization_completed", t + 1.0, {"cycle_id": no, "duration_s": 1.0}))
        t += 2.0
        start, end = session_events(no, t, t + session_s, no)
        emit(start)
        over = False
        for i in range(int(session_s * RATE)):
            ts = t + i / RATE
            force, zone = force_at(ts - start.t, over_every_s)
            now[0] = ts
            sink(ForceSample(ts, force, zone))
            fed += 1
            if zone == "over" and not over:
                emit(Event("over_pressure", ts, {"force_n": force, "limit_n": 4.5}))
            elif zone != "over" and over:
                emit(Event("over_pressure_cleared", ts, {"duration_s": 0.5, "peak_n": 4.9}))
            over = zone == "over"
        emit(end)
        t += session_s
    if not sink.flush(120.0):
        raise RuntimeError("the writer did not catch up")
    mid = proc_io()
    db_size = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    reader = Store.open(path, "bench")
    trace_bytes = reader.conn.execute("SELECT SUM(LENGTH(samples)) FROM trace").fetchone()[0]
    kept = reader.conn.execute("SELECT SUM(n) FROM trace").fetchone()[0]
    delivered = reader.conn.execute("SELECT SUM(delivered) FROM events").fetchone()[0]
    reader.conn.close()
    if not sink.close():
        raise RuntimeError("the store did not close cleanly")
    elapsed = time.perf_counter() - started
    after = proc_io()
    hours = sessions * session_s / 3600.0
    if detail:
        line(f"{name}_rolling", hours, "h")
        line(f"{name}_samples_in", fed, "samples")
        line(f"{name}_samples_dropped", sink.dropped_samples, "samples")
        line(f"{name}_trace_kept", kept, "samples")
        line(f"{name}_trace_payload", trace_bytes / 1e6 / hours, "MB/h")
        line(f"{name}_db_file", db_size / 1e6, "MB")
        line(f"{name}_wal_file", wal_size / 1e6, "MB")
    line(f"{name}_events", events, "events")
    line(f"{name}_events_marked_delivered", delivered, "events")
    if before and after:
        running = (mid["wchar"] - before["wchar"]) / 1e6 / hours
        total = (after["wchar"] - before["wchar"]) / 1e6 / hours
        if detail:
            line(f"{name}_written_while_rolling", running, "MB/h")
        line(f"{name}_written_incl_checkpoint", total, "MB/h")
        line(
            f"{name}_block_layer_writes",
            (after["write_bytes"] - before["write_bytes"]) / 1e6 / hours,
            "MB/h",
        )
        line(f"{name}_share_of_5MB_target", total / TARGET_MB_PER_HOUR, "fraction")
    else:
        line(f"{name}_written_incl_checkpoint", math.nan, "MB/h (no /proc/self/io)")
    line(f"{name}_wall_time", elapsed, "s")


def bench_commit(workdir: Path, sessions: int) -> None:
    path = workdir / "commit.db"
    committed: dict[int, float] = {}
    done = threading.Event()
    wanted = [0]

    def on_stored(event: Event, _stored: StoredEvent) -> None:
        seq = event.data.get("marker")
        if event.type == "session_ended":
            committed[int(event.data["session_no"])] = time.perf_counter()
            done.set()
        elif seq == wanted[0]:
            done.set()

    now = [0.0]
    sink = StoreSink(Store.open(path, "bench"), lambda: WALL0 + now[0], on_stored=on_stored)
    latencies: list[float] = []
    t = 0.0
    for no in range(1, sessions + 1):
        start, end = session_events(no, t, t + 2.0, 0)
        now[0] = t
        sink(EmitEvent(start))
        for i in range(2 * RATE):
            force, zone = force_at(i / RATE)
            sink(ForceSample(t + i / RATE, force, zone))
        # Let the writer catch up with the samples first, so only the commit is timed.
        done.clear()
        wanted[0] = no
        sink(EmitEvent(Event("over_pressure_cleared", t + 1.99, {"marker": no})))
        if not done.wait(30.0):
            raise RuntimeError("the writer stalled")
        done.clear()
        now[0] = t + 2.0
        emitted = time.perf_counter()
        sink(EmitEvent(end))
        if not done.wait(30.0):
            raise RuntimeError("session_ended was never committed")
        latencies.append((committed[no] - emitted) * 1000.0)
        t += 10.0
    sink.close()
    latencies = latencies[max(1, sessions // 20) :]  # skip warm-up
    line("session_summary_commit_median", statistics.median(latencies), "ms")
    line("session_summary_commit_p99", pct(latencies, 0.99), "ms")
    line("session_summary_commit_sessions", len(latencies), "sessions")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, under 30 s")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: can every figure still be made?"
    )
    args = parser.parse_args()
    # --smoke: one short session instead of an hour's six (the figures are then not an hour's).
    hour = {"sessions": 1, "session_s": 60.0} if args.smoke else {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="dg-bench-") as tmp:
        workdir = Path(tmp)
        # Heavy: an over-pressure episode every 40 s of rolling (some 200 events an hour).
        bench_hour(workdir, "storage_hour", over_every_s=120.0, **hour)  # type: ignore[arg-type]
        # Calm: one episode every ten minutes.
        bench_hour(
            workdir,
            "storage_hour_calm",
            over_every_s=600.0,
            detail=False,
            **hour,  # type: ignore[arg-type]
        )
        bench_commit(workdir, 20 if args.smoke else 200 if args.quick else 1000)


if __name__ == "__main__":
    main()
