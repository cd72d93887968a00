"""What every benchmark prints: percentiles and one ``name: value unit`` line per figure.

Importing this module also makes a closed standard output (``bench/x.py | head``) end the
benchmark with a ``SystemExit`` instead of a traceback: the exit runs every ``finally``, so the
brokers, daemons and pins a benchmark started are still stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Any, NoReturn, TextIO


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank), e.g. ``pct(v, 0.99)`` for p99."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def line(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.4g} {unit}", flush=True)


def _reader_gone() -> NoReturn:
    with contextlib.suppress(OSError):  # Python's flush at exit must not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())  # type: ignore[union-attr]
    raise SystemExit(141)  # as a shell reports a command stopped by SIGPIPE


class _StopWhenReaderGone:
    """Standard output that ends the benchmark quietly once nobody reads it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _reader_gone()

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _reader_gone()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


if sys.stdout is not None and not isinstance(sys.stdout, _StopWhenReaderGone):
    sys.stdout = _StopWhenReaderGone(sys.stdout)
