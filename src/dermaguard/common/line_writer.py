"""Lines to a stream from a thread of their own, so a stream that blocks blocks nobody else.

The engine thread prints zone changes and alarms; under systemd its stdout is a pipe to the
journal, in a terminal it may be paused (Ctrl-S), and in a test nobody may read it. A write
that blocks there would stop the engine thread, and with it the alarm path (S6). Lines go into
a bounded queue instead; past the bound new lines are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TextIO

log = logging.getLogger(__name__)

#: Lines held while the stream does not take them; past this, new lines are dropped.
MAX_LINES = 2000


class LineWriter:
    """A ``write``/``flush`` stand-in for a text stream; ``close()`` writes what is queued."""

    def __init__(self, out: TextIO, max_lines: int = MAX_LINES) -> None:
        self.out = out
        self.max_lines = max_lines
        self.dropped = 0
        #: Why the stream stopped taking lines (a closed pipe, a full disk), if it did.
        self.error: OSError | ValueError | None = None
        self._lines: deque[str] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()

    def write(self, text: str) -> int:
        with self._cond:
            if len(self._lines) >= self.max_lines:
                self.dropped += 1
                return 0
            self._lines.append(text)
            self._cond.notify()
        return len(text)

    def flush(self) -> None:
        """Nothing to do here: the thread flushes after each batch."""

    def close(self, timeout: float = 2.0) -> bool:
        """Write what is queued (for at most ``timeout`` s); ``False`` if the stream held it."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._lines and not self._closing:
                    self._cond.wait()
                batch = list(self._lines)
                self._lines.clear()
                closing = self._closing
            try:
                for text in batch:
                    self.out.write(text)
                self.out.flush()
            except (OSError, ValueError) as exc:  # a closed pipe: nobody is reading any more
                self.error = exc
                log.warning("console output stopped (%s); the daemon carries on", exc)
                return
            if closing and not self._lines:
                return
