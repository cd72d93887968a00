"""The daemon's live state in a small JSON file, for ``dermaguard status`` on the same machine.

Only the newest state matters, so the sink keeps one slot and a thread writes it atomically
(temporary file + rename): the engine thread never waits for the disk, and a reader never sees
half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from dermaguard.core.events import CaseStatus, Effect, EmitEvent, ShowIndicators
from dermaguard.history_view import case_word

log = logging.getLogger(__name__)

STATUS_NAME = "status.json"


class StatusFile:
    """An effect sink that mirrors the case and alarm state into ``path``."""

    def __init__(self, path: Path, wall: Any) -> None:
        self.path = path
        self._wall = wall
        self._state: dict[str, Any] = {"running": True}
        self._dirty = threading.Condition()
        self._pending = False
        self._closing = False
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
        elif isinstance(effect, EmitEvent) and effect.event.type in ("session_started",):
            update = {"session_open": effect.event.data.get("session_no")}
        elif isinstance(effect, EmitEvent) and effect.event.type == "session_ended":
            update = {"session_open": None}
        if not update:
            return
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
        return ", ".join(parts)

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
            try:
                write_atomic(self.path, json.dumps(snapshot, sort_keys=True))
            except OSError as exc:  # a full disk: the next change tries again
                log.warning("cannot write %s: %s", self.path, exc)
            if closing:
                return


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


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
