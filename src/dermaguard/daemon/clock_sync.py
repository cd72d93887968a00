"""Whether the wall clock is synchronised, for the rest rule (S10): a Pi has no real-time clock.

Until NTP has set it, the wall clock is fake-hwclock's last save or 1970. Two signs are read,
either one is enough:

- systemd-timesyncd's flag file ``/run/systemd/timesync/synchronized`` (on ``/run``, so gone
  at every boot): the documented signal that ``systemd-time-wait-sync`` waits for;
- the kernel's own state, ``adjtimex`` with no changes (modes 0): ``TIME_ERROR`` while
  ``STA_UNSYNC`` is set, which chrony and timesyncd clear once they discipline the clock. The
  service's sandbox (``ProtectClock=yes``) refuses that system call, so under the unit only the
  flag file counts; run by hand, chrony is recognised too.

The daemon never waits for either (the alarm starts at once): :class:`ClockWatch` reports the
state to the engine at start and at every change, from the main loop.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path

from dermaguard.core.events import ClockSync, Input

log = logging.getLogger(__name__)

#: systemd-timesyncd creates this once it has synchronised the clock in this boot.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
#: ``adjtimex``'s answer when the clock is not synchronised (STA_UNSYNC set).
TIME_ERROR = 5
#: How often the clock's state is looked at (a file's existence and a system call).
POLL_S = 5.0
#: Bytes for ``struct timex`` (208 on 64-bit Linux) with room to spare; zeroed, modes 0.
_TIMEX_BYTES = 512


def kernel_synced() -> bool | None:
    """The kernel's word (``None``: it cannot be asked here, e.g. refused by the sandbox)."""
    try:
        adjtimex = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    state = int(adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES)))
    if state < 0:
        return None
    return state != TIME_ERROR


def clock_synchronised(
    flag: Path = TIMESYNC_FLAG, kernel: Callable[[], bool | None] = kernel_synced
) -> bool:
    """Either sign says the clock is synchronised."""
    return flag.exists() or kernel() is True


class ClockWatch:
    """Reports the clock's state to the engine (``put``) at the first :meth:`poll` and at each
    change; :meth:`poll` looks at most every ``every_s`` seconds of ``monotonic``."""

    def __init__(
        self,
        put: Callable[[Input], None],
        monotonic: Callable[[], float],
        *,
        probe: Callable[[], bool] = clock_synchronised,
        every_s: float = POLL_S,
    ) -> None:
        self._put = put
        self._monotonic = monotonic
        self._probe = probe
        self.every_s = every_s
        self.synced: bool | None = None
        self._due = -float("inf")

    def poll(self) -> None:
        now = self._monotonic()
        if now < self._due:
            return
        self._due = now + self.every_s
        try:
            synced = self._probe()
        except OSError as exc:
            log.warning("cannot tell whether the clock is synchronised: %s", exc)
            synced = False
        if synced == self.synced:
            return
        if not synced:
            log.warning(
                "the clock is not synchronised (no NTP yet): times are guesses and the rest "
                "between sessions cannot be checked until it is"
            )
        elif self.synced is not None:
            log.info("the clock is synchronised now")
        self.synced = synced
        self._put(ClockSync(now, synced))
