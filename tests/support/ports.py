"""Loopback ports for the tests' own servers, one block of ports per pytest-xdist worker.

A broker that a test stops and starts again keeps its port, and a port where "nobody listens"
must stay so for the whole test. A port the kernel hands out for ``bind(0)`` comes from its
ephemeral range, so once released it can go to the other worker's next server (or to any
outgoing connection). Each worker instead goes round its own block below that range, skipping
ports in use; within a worker, a released port comes back only after the whole block.
"""

from __future__ import annotations

import os
import random
import socket
import threading

LOOPBACK = "127.0.0.1"
_BASE = 20_000  # below Linux's default ephemeral range (32768-60999)
_BLOCK = 2_000
_WORKER_BLOCKS = 6  # 20000-31999

_lock = threading.Lock()
_offset: int | None = None


def _worker_index() -> int:
    digits = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    return int(digits) % _WORKER_BLOCKS if digits.isdigit() else 0


def free_port() -> int:
    """A loopback TCP port nobody listens on, from this worker's block."""
    global _offset
    start = _BASE + _worker_index() * _BLOCK
    with _lock:
        if _offset is None:
            _offset = random.randrange(_BLOCK)  # runs that follow each other start apart
        for _ in range(_BLOCK):
            port = start + _offset
            _offset = (_offset + 1) % _BLOCK
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue  # in use, or still in TIME_WAIT
            return port
    raise RuntimeError(f"no free loopback port in {start}-{start + _BLOCK - 1}")
