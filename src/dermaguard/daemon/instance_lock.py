"""One process at a time writes a state directory: an OS lock that dies with its holder.

Two daemons on one state directory number their sessions alike, close each other's running
cycle as ``interrupted``, run the same command twice and take each other's broker connection
(docs/RELIABILITY.md, "One process per state directory"). So ``run``, ``calibrate`` and
``check-hardware`` each hold this lock for as long as they may write the directory, and a
second one is refused, naming the process that holds it.

The lock is ``flock(2)`` on the state directory itself, not on a file in it: taking it writes
nothing, so it works on a full or read-only file system (the daemon still starts there, with
its history unavailable), and the kernel releases it when the holder ends however it ends
(SIGKILL, a crash). Who holds it is read from ``/proc/locks``, which cannot go stale; a small
``dermaguard.lock`` note (pid and command) is written next to it when the disk allows, for a
system without ``/proc``. The simulation has its own state directory, so its lock is its own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from pathlib import Path
from types import TracebackType

#: Exit status of a command refused because another process holds the state directory
#: (EX_TEMPFAIL: it works once that process has stopped). Documented in README.md.
EXIT_IN_USE = 75
#: The note naming the holder, beside the lock (best effort; ``/proc/locks`` comes first).
NOTE_NAME = "dermaguard.lock"


class StateDirInUse(Exception):
    """Another process holds the state directory; the message names it and what to do."""

    def __init__(self, path: Path, holder: str, hint: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"{path} is in use by another dermaguard process: {holder}. One process at a "
            f"time may write a state directory; {hint}"
        )


#: What to do when the daemon holds the directory, by the command that was refused.
HINTS = {
    "run": "stop the other daemon first (for the service: sudo systemctl stop dermaguard)",
    "calibrate": (
        "stop the daemon first (for the service: sudo systemctl stop dermaguard), or tare "
        "through the running daemon (MQTT cmd/tare or the dashboard's Tare button)"
    ),
    "check-hardware": (
        "stop the daemon first (for the service: sudo systemctl stop dermaguard); it holds "
        "the HX711 and the case switches"
    ),
}


class InstanceLock:
    """The held lock; :meth:`release` (or leaving the ``with`` block) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            (self.path / NOTE_NAME).unlink(missing_ok=True)
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.release()


def acquire(path: Path, command: str) -> InstanceLock:
    """Take the lock of state directory ``path`` for ``command`` or raise :class:`StateDirInUse`.

    ``path`` must exist (the commands create it, and say so, before they lock it). The
    descriptor is close-on-exec, so a child process never inherits the lock.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        hint = HINTS.get(command, HINTS["run"])
        raise StateDirInUse(path, holder(path), hint) from None
    _write_note(path, command)
    return InstanceLock(path, fd)


def holder(path: Path) -> str:
    """``pid N (command line)`` of the process holding ``path``'s lock, as far as known."""
    pid = _pid_from_proc_locks(path)
    if pid is not None:
        command = _cmdline(pid)
        return f"pid {pid} ({command})" if command else f"pid {pid}"
    try:
        note = (path / NOTE_NAME).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        note = ""
    pid_text, _, command = note.partition(" ")
    if pid_text.isdigit():
        return f"pid {pid_text} ({command})" if command else f"pid {pid_text}"
    return "a process this system does not name"


def _pid_from_proc_locks(path: Path) -> int | None:
    """The holder of a flock on ``path``'s inode, from ``/proc/locks`` (Linux)."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    want_dev = (os.major(st.st_dev), os.minor(st.st_dev))
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:02:131090 0 EOF" ("->" marks a waiter)
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[2] == "->":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            pid = int(fields[4])
            if (int(major, 16), int(minor, 16)) == want_dev and int(inode) == st.st_ino:
                return pid if pid > 0 else None
        except ValueError:
            continue
    return None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return text if len(text) <= 200 else text[:197] + "..."


def _write_note(path: Path, command: str) -> None:
    """Best effort: a full or read-only disk only costs the note, never the lock."""
    argv = " ".join(sys.argv) if sys.argv and sys.argv[0] else command
    note = path / NOTE_NAME
    with contextlib.suppress(OSError):
        note.write_text(f"{os.getpid()} {argv}\n", encoding="utf-8")
