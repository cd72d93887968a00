"""What every ``dermaguard`` command shares: its exit codes and how it says why it stopped.

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
