"""What every ``dermaguard`` command shares: its exit codes, how it says why it stopped, and
the ``--mqtt`` address it may take.

A person's mistake exits 2 with a message and no traceback; what the machine refuses exits 1
with a message naming it (the rule of ``ui/cli.py``).
"""

from __future__ import annotations

import contextlib
import sys

EXIT_USAGE = 2
#: The machine refused something (an unwritable directory, an unreadable history, a closed
#: standard output): the message names it.
EXIT_ENVIRONMENT = 1


def usage_error(message: str) -> int:
    """A person's mistake: say what it is, exit 2."""
    print(f"dermaguard: {message}", file=sys.stderr)
    return EXIT_USAGE


def environment_error(message: str) -> int:
    """The machine refused (a file, a directory, a closed pipe): not a usage mistake."""
    with contextlib.suppress(OSError):
        print(f"dermaguard: {message}", file=sys.stderr)
    return EXIT_ENVIRONMENT


def broker_address(text: str) -> dict[str, object]:
    """``host``, ``host:port`` or ``[v6addr]:port`` → mqtt overrides (validated as config)."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    out: dict[str, object] = {"enabled": True, "host": host}
    if port is not None:
        out["port"] = int(port) if port.isdigit() else port
    return out
