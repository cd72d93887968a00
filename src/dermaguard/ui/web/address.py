"""Where the running dashboard really listens, written down when it starts.

``dermaguard web --show-url`` runs as another process, often with other options than the
service (no ``--listen``, no ``--port``): reading the config would give it a link where nothing
answers. The server writes the address and port it bound (and its pid) to ``web-address`` in
the state directory once it listens, and removes it when it stops; ``--show-url`` reads it. The
token is not in it: it stays in the token file alone.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ADDRESS_NAME: Final = "web-address"


@dataclass(frozen=True, slots=True)
class Listening:
    """The address a running dashboard bound, as written in ``web-address``."""

    scheme: str
    host: str
    port: int
    pid: int


def write_listening(path: Path, listening: Listening) -> None:
    """Written whole (a temporary file renamed over it), so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = path.with_name(path.name + ".part")
    part.write_text(
        json.dumps(
            {
                "scheme": listening.scheme,
                "host": listening.host,
                "port": listening.port,
                "pid": listening.pid,
            }
        )
        + "\n",
        "utf-8",
    )
    part.replace(path)


def remove_listening(path: Path, pid: int) -> None:
    """Remove ``path`` if this process wrote it (a newer server may have replaced it)."""
    found = read_listening(path)
    if found is not None and found.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def read_listening(path: Path) -> Listening | None:
    """What ``path`` says, or None when it is missing, unreadable or not ours."""
    try:
        obj = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    scheme, host, port, pid = (obj.get(k) for k in ("scheme", "host", "port", "pid"))
    if scheme not in ("http", "https") or not isinstance(host, str) or not host:
        return None
    if not isinstance(port, int) or not 1 <= port <= 65535 or not isinstance(pid, int):
        return None
    return Listening(scheme, host, port, pid)


def running(pid: int) -> bool:
    """Whether a process ``pid`` exists (it may belong to another user, e.g. the service's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
