"""The daemon's live state in a small JSON file, for ``dermaguard status`` on the same machine.

Only the newest state matters, so the sink keeps one slot and a thread writes it atomically
(temporary file + rename): the engine thread never waits for the disk, and a reader never sees
half a file.

The file lives beside the history, so the disk that refuses the history (full, read-only)
refuses it too: then it is written to a fallback in memory-backed ``/run`` (see
:func:`fallback_path`), where ``dermaguard status`` also looks, so the status can still say
that the history is unavailable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from dermaguard.core.events import CaseStatus, Effect, EmitEvent, EventType, ShowIndicators
from dermaguard.core.words import case_word

log = logging.getLogger(__name__)

STATUS_NAME = "status.json"


class StatusFile:
    """An effect sink that mirrors the case and alarm state into ``path``."""

    #: The effects it acts on (the runtime offers it no others).
    effect_types = (CaseStatus, ShowIndicators, EmitEvent)

    def __init__(self, path: Path, wall: Any) -> None:
        self.path = path
        self._wall = wall
        self.fallback = fallback_path(path)
        self._state: dict[str, Any] = {
            "running": True,
            **process_identity(),
            "history": "available",
            "history_problem": None,
            "history_set_aside": None,
        }
        self._dirty = threading.Condition()
        self._pending = False
        self._closing = False
        self._on_fallback = False  # status-file thread only
        self._thread = threading.Thread(target=self._run, name="status-file", daemon=True)
        self._thread.start()

    def __call__(self, effect: Effect) -> None:
        update: dict[str, Any] = {}
        if isinstance(effect, CaseStatus):
            update = {
                "case_state": effect.state,
                "uv_on": effect.uv_on,
                "sterile": effect.sterile,
                "remaining_s": effect.remaining_s,
                "abort_reason": effect.abort_reason,
            }
        elif isinstance(effect, ShowIndicators):
            update = {"alarm": effect.alarm_reason, "zone": effect.zone}
        elif isinstance(effect, EmitEvent) and effect.event.type == EventType.SESSION_STARTED:
            update = {"session_open": effect.event.data.get("session_no")}
        elif isinstance(effect, EmitEvent) and effect.event.type == EventType.SESSION_ENDED:
            update = {"session_open": None}
        elif isinstance(effect, EmitEvent) and effect.event.type == EventType.CLOCK_SYNC:
            update = {"clock_synced": effect.event.data.get("synced") is True}
        elif isinstance(effect, EmitEvent) and effect.event.type == EventType.THREAD_FAILED:
            # Which helper threads died and were restarted, and how often: a daemon that
            # restarts one in a loop must not look healthy (docs/ARCHITECTURE.md, "Threads").
            data = effect.event.data
            with self._dirty:
                failed = dict(self._state.get("threads_failed") or {})
            failed[str(data.get("thread"))] = data.get("failures")
            update = {"threads_failed": failed}
        if update:
            self._update(update)

    def set_history(self, problem: str | None) -> None:
        """The history is unavailable (``problem`` says why) or available again (``None``)."""
        self._update(
            {
                "history": "available" if problem is None else "unavailable",
                "history_problem": problem,
            }
        )

    def history_set_aside(self, path: Path) -> None:
        """A corrupt history was renamed to ``path`` and a new one started."""
        self._update({"history_set_aside": str(path)})

    def _update(self, update: dict[str, Any]) -> None:
        with self._dirty:
            self._state.update(update)
            self._state["updated_wall"] = self._wall()
            self._pending = True
            self._dirty.notify()

    def summary(self) -> str:
        """A short line of the current state (for ``systemctl status``)."""
        with self._dirty:
            st = dict(self._state)
        parts = [f"case {case_word(str(st.get('case_state', 'unknown')))}"]
        if st.get("uv_on"):
            parts.append("UV on")
        if st.get("session_open"):
            parts.append(f"session {st['session_open']} in use")
        parts.append(f"zone {st.get('zone') or 'unknown'}")
        if st.get("alarm"):
            parts.append(f"ALARM {st['alarm']}")
        if st.get("threads_failed"):
            parts.append("threads restarted: " + ", ".join(sorted(st["threads_failed"])))
        if st.get("history") == "unavailable":
            parts.append("history unavailable")
        if st.get("clock_synced") is False:
            parts.append("clock not synchronised")
        return ", ".join(parts)

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs (the daemon's supervisor restarts it when not)."""
        return self._thread.is_alive() or self._closing

    def restart(self) -> None:
        """Start the writer thread again after it died, and write the state as it is now."""
        with self._dirty:
            if self._thread.is_alive() or self._closing:
                return
            self._pending = True
            self._thread = threading.Thread(target=self._run, name="status-file", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._dirty:
            self._state["running"] = False
            self._state["updated_wall"] = self._wall()
            self._pending = True
            self._closing = True
            self._dirty.notify()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._dirty:
                while not self._pending and not self._closing:
                    self._dirty.wait()
                snapshot = dict(self._state)
                self._pending = False
                closing = self._closing
            self._write(json.dumps(snapshot, sort_keys=True))
            if closing:
                return

    def _write(self, text: str) -> None:
        """The state directory's file, else the fallback; the one not written is removed, so a
        reader never takes an old copy for the current one."""
        try:
            write_atomic(self.path, text)
        except OSError as exc:  # a full or read-only disk: the next change tries again
            try:
                write_atomic(self.fallback, text)
            except OSError as also:
                log.warning("cannot write %s (%s) nor %s (%s)", self.path, exc, self.fallback, also)
                return
            if not self._on_fallback:
                log.warning(
                    "cannot write %s (%s): the status goes to %s", self.path, exc, self.fallback
                )
            self._on_fallback = True
            return
        if self._on_fallback:
            self._on_fallback = False
            with contextlib.suppress(OSError):
                self.fallback.unlink()


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fallback_path(path: Path) -> Path:
    """Where the status of state file ``path`` goes when its disk refuses it: the service's
    runtime directory (``$RUNTIME_DIRECTORY``, ``/run/dermaguard``), else the user's
    (``/run/user/UID``), else the temporary directory; named for the state directory, so a
    simulation and the device never share one."""
    digest = hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:12]
    return _runtime_dir() / f"dermaguard-status-{digest}.json"


def _runtime_dir() -> Path:
    for candidate in (
        os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0],
        "/run/dermaguard",
        f"/run/user/{os.getuid()}",
    ):
        if candidate and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return Path(tempfile.gettempdir())


def read_status(path: Path) -> dict[str, Any] | None:
    """The last state written, with ``running`` corrected for a daemon that died without saying
    so (SIGKILL, power cut): a file is only as live as the process that wrote it.

    A live daemon's fallback copy (its disk refused ``path``) wins over ``path``; otherwise
    the newer of the two.
    """
    fallback = _read_one(fallback_path(path))
    main = _read_one(path)
    if fallback is None or main is None:
        return main if fallback is None else fallback
    if fallback.get("running"):
        return fallback
    newer = _wall_of(fallback) > _wall_of(main)
    return fallback if newer and not main.get("running") else main


def _wall_of(data: dict[str, Any]) -> float:
    wall = data.get("updated_wall")
    return float(wall) if isinstance(wall, int | float) else 0.0


def _read_one(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("running") and not _writer_alive(data):
        data["running"] = False
    return data


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Process ``pid``'s state letter and start time (clock ticks since boot), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        fields = stat.rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def process_identity() -> dict[str, Any]:
    """This process, as ``status`` later checks whether it still runs."""
    stat = _proc_stat(os.getpid())
    return {"pid": os.getpid(), "pid_start": stat[1] if stat is not None else None}


def _writer_alive(data: dict[str, Any]) -> bool:
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # written by a version that did not record it: it cannot be vouched for
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (the service's)
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc to ask: the signal said it exists
    state, start = stat
    if state in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    # A different start time: the pid was reused by another process since.
    return data.get("pid_start") in (None, start)
