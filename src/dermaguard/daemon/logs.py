"""Log records to stderr in a form journald understands, and readable at a terminal.

Under systemd, stderr goes to the journal: a ``<N>`` syslog-priority prefix on each line lets
journald record the level (``journalctl -p warning`` then works), and journald adds its own
timestamps. At a terminal there is no prefix but a short time stamp.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

#: Python levels to syslog priorities (sd-daemon(3)).
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``; a multi-line record (a traceback) keeps its priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def _priority(levelno: int) -> int:
    for level, priority in sorted(_PRIORITY.items(), reverse=True):
        if levelno >= level:
            return priority
    return 7


def stderr_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """systemd sets ``$JOURNAL_STREAM`` to the device and inode of the journal's stream; it is
    ours only if stderr is still that stream (not redirected by a wrapper)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup_logging(level: str, stream: TextIO | None = None) -> None:
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    if stderr_is_journal(out):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
