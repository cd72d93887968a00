"""Bounded polling for tests that watch threads or child processes.

The bound only turns a hang into a failure; no test asserts on how fast something happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: How long (real seconds) an emulated HX711 read may be retried while host pauses spoil it. A
#: loaded host (a busy CI runner, the other test worker) pre-empts a bit-banged reader in runs
#: of many reads: tests retry for a while, not a number of times.
RETRY_READS_S = 20.0


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, poll: float = 0.002) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` real seconds pass; its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(poll)
