"""The trace: packing, downsampling to 10 Hz, and the round trip through the sink."""

from __future__ import annotations

import math
import struct
from itertools import pairwise
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from store_helpers import FakeWall, ended, started

from dermaguard.core.events import ZONES, ForceSample
from dermaguard.store import Store, StoreSink, open_readonly
from dermaguard.store.trace import pack, unpack
from dermaguard.store.writer import Downsampler

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
sample = st.tuples(
    st.integers(0, 10_000_000).map(lambda ms: ms / 1000.0),
    st.none() | finite32,
    st.none() | st.sampled_from(ZONES),
)


@given(st.lists(sample, max_size=200))
def test_pack_round_trip(samples: list[tuple[float, float | None, str | None]]) -> None:
    blob = pack(samples)  # type: ignore[arg-type]
    assert len(blob) == 9 * len(samples)
    assert unpack(blob, len(samples)) == samples


def test_pack_rounds_to_float32_and_milliseconds() -> None:
    ((t, f, z),) = unpack(pack([(1.23456, 2.1, "high")]), 1)
    assert t == 1.235
    assert f == struct.unpack("<f", struct.pack("<f", 2.1))[0]
    assert z == "high"


def test_downsampler_keeps_10_hz_of_80_hz() -> None:
    d = Downsampler(10.0)
    kept = [i / 80 for i in range(800) if d.keep(i / 80)]
    assert len(kept) == 100
    gaps = [b - a for a, b in pairwise(kept)]
    assert all(math.isclose(g, 0.1, abs_tol=1e-9) for g in gaps)


def test_downsampler_with_jitter_never_keeps_closer_than_the_period() -> None:
    d = Downsampler(10.0)
    times = [i * 0.0125 + (0.002 if i % 3 else -0.002) for i in range(1, 2000)]
    kept = [t for t in times if d.keep(t)]
    assert all(b - a >= 0.1 - 1e-6 for a, b in pairwise(kept))
    assert 8.0 <= len(kept) / (times[-1] - times[0]) <= 10.0


def test_trace_round_trip_through_the_sink(db_path: Path) -> None:
    wall = FakeWall()
    sink = StoreSink(Store.open(db_path, "dev"), wall)
    try:
        sink(ForceSample(0.5, 9.0, "over"))  # before the session: not recorded
        wall.at(1.0)
        sink(started(1, 1.0))
        for i in range(80 * 25):  # 25 s at 80 Hz
            t = 1.0 + i / 80
            force = None if i % 16 == 0 else 1.0 + (i % 40) / 10
            zone = None if force is None else ("ok" if force < 3 else "high")
            sink(ForceSample(t, force, zone))
        wall.at(26.0)
        sink(ended(1, 1.0, 26.0))
        sink(ForceSample(26.5, 9.0, "over"))  # after the session: not recorded
        assert sink.flush(10.0)
    finally:
        assert sink.close()
    with open_readonly(db_path) as reader:
        trace = reader.trace(1)
        chunks = reader.conn.execute("SELECT COUNT(*) FROM trace").fetchone()[0]
    assert len(trace) == 250  # 10 Hz
    assert chunks == 2  # a chunk of 200 samples (20 s), the rest with session_ended
    assert trace[0][0] == 0.0 and math.isclose(trace[-1][0], 24.9)
    # Every 16th input sample had an unknown force; every 2nd kept sample is one of them.
    assert [s[1] is None for s in trace[:4]] == [True, False, True, False]
    assert all(s[2] is None for s in trace if s[1] is None)
    expected = {round(1.0 + (i % 40) / 10, 3) for i in range(0, 80 * 25, 8) if i % 16}
    assert {round(f, 3) for _, f, _ in trace if f is not None} == expected


def test_trace_flushes_after_flush_s_of_samples(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.db", "dev", trace_flush_s=2.0)
    try:
        store.append_event(started(1, 0.0).event, FakeWall()())
        for i in range(25):
            store.add_trace(i / 10, 1.0, "ok")
        rows = store.conn.execute("SELECT n FROM trace ORDER BY key").fetchall()
        assert [r[0] for r in rows] == [21]  # 0.0 .. 2.0 s
        assert store.trace_buffered == 4
        assert len(store.trace(1)) == 25  # the writer also sees what is buffered
        assert store.open_session == 1
    finally:
        store.close()
    with open_readonly(tmp_path / "h.db") as reader:
        assert len(reader.trace(1)) == 25  # close() wrote the buffer


def test_trace_times_are_relative_to_the_session_start(store: Store) -> None:
    wall = FakeWall()
    # The core dates the session from leaving the dock (3 s before the first contact).
    event = started(1, 13.0).event
    data = dict(event.data)
    data["started_at"] = "2025-11-25T18:50:33.000Z"  # WALL0 + 10 s
    store.append_event(type(event)(event.type, 13.0, data), wall.at(13.0))
    store.add_trace(13.0, 1.0, "ok")
    assert store.trace(1) == [(3.0, 1.0, "ok")]
    # With t_start given, that is used.
    store.append_event(
        type(event)(event.type, 20.0, {**data, "session_no": 2, "t_start": 19.5}), wall.at(20.0)
    )
    store.add_trace(20.0, 1.0, "ok")
    assert store.trace(2) == [(0.5, 1.0, "ok")]
