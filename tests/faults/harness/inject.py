"""Faults injected at the edges: the SQLite file system, the SPI device, a thread, the clock.

Nothing here patches the daemon's logic. The disk is broken below the store (every connection
the daemon opens is made through :class:`FaultyConnection`), the SPI device raises what a
kernel's spidev raises, and a thread gets an exception raised inside it wherever it is.
"""

from __future__ import annotations

import ctypes
import errno
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dermaguard.store.reader import _Connection

#: Statements that write: on a full or read-only disk these fail, reads still work.
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "ALTER", "DROP", "BEGIN IMMEDIATE")


class InjectedFault(Exception):
    """The exception a thread fault raises: a bug anywhere in that thread."""


class Disk:
    """The state of the emulated disk under the history database."""

    def __init__(self) -> None:
        self.mode: str | None = None  # None, "full" or "readonly"
        self.failures = 0

    def error(self, sql: str) -> sqlite3.Error | None:
        mode = self.mode
        if mode is None:
            return None
        head = sql.lstrip().upper()
        if not (head.startswith(_WRITES) or (head.startswith("PRAGMA") and "=" in head)):
            return None
        self.failures += 1
        if mode == "full":
            return sqlite3.OperationalError("database or disk is full")
        return sqlite3.OperationalError("attempt to write a readonly database")


DISK = Disk()


class FaultyConnection(_Connection):
    """A connection whose writes fail while :data:`DISK` is full or read-only."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        err = DISK.error(sql)
        if err is not None:
            raise err
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        err = DISK.error(sql)
        if err is not None:
            raise err
        return super().executemany(sql, *args)

    def executescript(self, sql: str) -> sqlite3.Cursor:
        err = DISK.error(sql)
        if err is not None:
            raise err
        return super().executescript(sql)

    def commit(self) -> None:
        err = DISK.error("INSERT") if self.in_transaction else None
        if err is not None:
            raise err
        super().commit()


@contextmanager
def faulty_sqlite() -> Iterator[Disk]:
    """Every ``sqlite3.connect`` in this process opens a :class:`FaultyConnection`."""
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        factory = kwargs.get("factory")
        if factory is None or factory is _Connection:
            kwargs["factory"] = FaultyConnection
        return real(*args, **kwargs)

    DISK.mode = None
    DISK.failures = 0
    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield DISK
    finally:
        sqlite3.connect = real  # type: ignore[assignment]
        DISK.mode = None


def corrupt(path: Path, *, whole: bool) -> None:
    """Overwrite the database file: all of it (a start on garbage), or pages past the first."""
    if whole or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"this is not an SQLite database\n" * 256)
        return
    size = path.stat().st_size
    with path.open("r+b") as f:
        for offset in range(4096, max(size, 8192), 4096):
            f.seek(offset)
            f.write(b"\xa5" * 512)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        with wal.open("r+b") as f:
            f.seek(32)
            f.write(b"\xa5" * 4096)


class FlakySpi:
    """Wraps the emulated SPI device: the next ``burst`` transfers raise EIO, as spidev does."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.pending = 0
        self.raised = 0
        real = bus.transfer

        def transfer(data: Any) -> list[int]:
            if self.pending > 0:
                self.pending -= 1
                self.raised += 1
                raise OSError(errno.EIO, "Input/output error")
            return list(real(data))

        bus.transfer = transfer

    def burst(self, n: int) -> None:
        self.pending += n


class RunHung(BaseException):
    """Raised in the thread running the daemon when it did not stop in time."""


def raise_in_thread(name: str, exc: type[BaseException] = InjectedFault) -> bool:
    """Raise ``exc`` inside the live thread called ``name``; False if there is none."""
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None and thread.is_alive():
            n = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(exc)
            )
            return bool(n == 1)
    return False


@contextmanager
def time_limit(seconds: float, hung: Callable[[], None]) -> Iterator[None]:
    """Raise :class:`RunHung` in this thread if the block runs longer than ``seconds``."""
    me = threading.current_thread().name
    done = threading.Event()

    def watch() -> None:
        # Once, and again only if the first did not end it: an exception raised into the
        # daemon's own clean-up could leave a lock of its devices held.
        for _ in range(3):
            if done.wait(seconds):
                return
            hung()
            raise_in_thread(me, RunHung)

    watcher = threading.Thread(target=watch, name="harness-time-limit", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


class Stall:
    """Holds a wrapped function (the engine's ``handle``) for a while of real time."""

    def __init__(self) -> None:
        self.until = 0.0
        self.stalled = 0

    def start(self, real_s: float) -> None:
        self.until = time.perf_counter() + real_s

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def stalled(*args: Any, **kwargs: Any) -> Any:
            if time.perf_counter() < self.until:
                self.stalled += 1
                while time.perf_counter() < self.until:
                    time.sleep(0.01)
            return fn(*args, **kwargs)

        return stalled
