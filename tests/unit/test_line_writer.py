"""A stdout that blocks (a full pipe, a paused terminal) never blocks the writer's caller."""

from __future__ import annotations

import io
import threading

from dermaguard.common.line_writer import LineWriter


class BlockedStream(io.StringIO):
    """A stream whose writes wait until the test opens it, like a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()

    def write(self, s: str) -> int:
        self.open.wait()
        return super().write(s)


def test_writes_return_at_once_while_the_stream_is_blocked_and_arrive_in_order() -> None:
    stream = BlockedStream()
    writer = LineWriter(stream, max_lines=100)
    for i in range(150):  # returns although nothing can be written yet
        writer.write(f"line {i}\n")
    stream.open.set()
    assert writer.close(timeout=10.0)
    lines = stream.getvalue().splitlines()
    # The first may have been taken before the bound was reached; then up to 100 queued.
    assert lines == [f"line {i}" for i in range(len(lines))]
    assert 100 <= len(lines) <= 101 and writer.dropped == 150 - len(lines)


def test_a_closed_stream_ends_the_thread_quietly() -> None:
    stream = io.StringIO()
    stream.close()
    writer = LineWriter(stream)
    writer.write("lost\n")
    assert writer.close(timeout=5.0)
