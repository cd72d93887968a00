"""The shell's side of a Pi without a real-time clock: is the wall clock synchronised?"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from pytest_mock import MockerFixture

from dermaguard.core.events import ClockSync, EmitEvent, Event, EventType, Input
from dermaguard.daemon import clock_sync
from dermaguard.daemon.app import read_history
from dermaguard.daemon.clock_sync import ClockWatch, clock_synchronised, kernel_synced
from dermaguard.daemon.status_file import STATUS_NAME, StatusFile, read_status
from dermaguard.mqtt.decode import parse_session
from dermaguard.ui.cli_history import _history_lines
from support.waiting import wait_until


def test_timesyncds_flag_file_says_synchronised(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    assert clock_synchronised(flag, kernel=lambda: None) is False
    flag.touch()
    assert clock_synchronised(flag, kernel=lambda: None) is True


def test_the_kernels_word_counts_without_the_flag_file(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    assert clock_synchronised(flag, kernel=lambda: True) is True
    assert clock_synchronised(flag, kernel=lambda: False) is False


@pytest.mark.parametrize(
    ("returned", "synced"),
    [(0, True), (1, True), (clock_sync.TIME_ERROR, False), (-1, None)],
    ids=["time_ok", "time_ins", "time_error", "refused"],
)
def test_kernel_synced_reads_adjtimex_without_changing_anything(
    mocker: MockerFixture, returned: int, synced: bool | None
) -> None:
    libc = mock.Mock()
    libc.adjtimex.return_value = returned
    mocker.patch.object(clock_sync.ctypes, "CDLL", return_value=libc)
    assert kernel_synced() is synced
    (buf,), _ = libc.adjtimex.call_args
    assert bytes(buf) == bytes(len(buf))  # modes 0: a read, never an adjustment


def test_the_watch_reports_at_the_first_poll_and_at_changes_only() -> None:
    got: list[Input] = []
    now = [100.0]
    state = [False]
    watch = ClockWatch(got.append, lambda: now[0], probe=lambda: state[0], every_s=5.0)
    watch.poll()
    now[0] += 1.0
    state[0] = True
    watch.poll()  # not due yet
    assert got == [ClockSync(100.0, False)]
    now[0] += 5.0
    watch.poll()
    now[0] += 5.0
    watch.poll()
    assert got == [ClockSync(100.0, False), ClockSync(106.0, True)]


def test_the_last_sessions_clock_flag_reaches_the_engine() -> None:
    class Reader:
        def __init__(self, last: dict[str, object] | None) -> None:
            self.last = last

        def last_session(self) -> dict[str, object] | None:
            return self.last

        def rollers(self) -> list[dict[str, object]]:
            return []

        def last_session_no(self) -> int:
            return 0 if self.last is None else 1

        def last_cycle_id(self) -> int:
            return 0

    unsynced = {"ended_wall": 1.0e9, "clock_synced": False}
    assert read_history(Reader(unsynced)).last_session_end_synced is False  # type: ignore[arg-type]
    assert read_history(Reader({"ended_wall": 1.0e9})).last_session_end_synced is True  # type: ignore[arg-type]
    assert read_history(Reader(None)).last_session_end_synced is True  # type: ignore[arg-type]


def test_status_says_while_the_clock_is_not_synchronised(tmp_path: Path) -> None:
    path = tmp_path / STATUS_NAME
    status = StatusFile(path, lambda: 1_790_000_000.0)
    try:
        status(EmitEvent(Event(EventType.CLOCK_SYNC, 1.0, {"synced": False})))
        assert wait_until(lambda: (read_status(path) or {}).get("clock_synced") is False)
        assert "clock not synchronised" in status.summary()
        live = read_status(path)
        assert "NOT SYNCHRONISED" in _history_lines(live)
        status(EmitEvent(Event(EventType.CLOCK_SYNC, 9.0, {"synced": True})))
        assert wait_until(lambda: (read_status(path) or {}).get("clock_synced") is True)
        assert "clock" not in status.summary()
        assert "NOT SYNCHRONISED" not in _history_lines(read_status(path))
    finally:
        status.close()


def test_the_live_summary_says_whether_its_times_are_real() -> None:
    summary = {
        "session_no": 4,
        "ended_at": "2026-12-06T06:00:00.000Z",
        "duration_s": 60.0,
        "contact_s": 50.0,
        "peak_n": 2.5,
        "over_episodes": 0,
        "end_reason": "docked",
    }
    assert parse_session(summary).clock_synced is True
    assert parse_session({**summary, "clock_synced": False}).clock_synced is False
