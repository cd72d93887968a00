"""Logs: syslog priorities for journald when stderr is the journal's stream, plain otherwise."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dermaguard.daemon.logs import JournalFormatter, setup_logging, stderr_is_journal


def record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("dermaguard.x", level, __file__, 1, msg, None, None)


def test_each_line_carries_the_priority_journald_reads() -> None:
    f = JournalFormatter()
    assert f.format(record(logging.WARNING, "broker away")) == "<4>dermaguard.x: broker away"
    assert f.format(record(logging.ERROR, "a\nb")) == "<3>dermaguard.x: a\n<3>b"
    assert f.format(record(logging.DEBUG, "d")).startswith("<7>")
    assert f.format(record(logging.CRITICAL, "c")).startswith("<2>")


def test_the_journal_is_recognised_only_by_its_own_stream(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w") as stream:
        st = os.fstat(stream.fileno())
        assert stderr_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stderr_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not stderr_is_journal(stream, {})
        assert not stderr_is_journal(stream, {"JOURNAL_STREAM": "garbage"})


def test_setup_writes_prefixed_lines_under_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "err"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        root = logging.getLogger()
        saved = root.handlers[:], root.level
        try:
            setup_logging("info", stream)
            logging.getLogger("dermaguard.t").warning("lost the broker")
            logging.getLogger("dermaguard.t").debug("not shown at info")
        finally:
            root.handlers[:], level = saved
            root.setLevel(level)
    assert path.read_text() == "<4>dermaguard.t: lost the broker\n"
