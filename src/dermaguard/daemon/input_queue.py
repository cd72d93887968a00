"""The engine's input queue: one FIFO, bounded for force samples, never for what a person did.

The policy (docs/ARCHITECTURE.md, "Threads"):

- **One order.** Every input goes through the same FIFO, so the engine sees a switch change
  between the samples around it, as it happened.
- **Force samples are bounded.** At most ``bound`` ``ForceRead`` wait at once; the bound is
  :data:`QUEUE_REAL_S` of real time at the sample rate and the clock's speed (160 samples on
  the device), far more than the engine ever lags in normal running or under the stall load of
  ``bench/pressure.py``. A full queue means the engine is stuck: the new sample is dropped and
  counted, a warning is logged, and the first drop of a spell also queues
  ``ReadFailed(t, "engine_stalled")``, a sensor fault the engine raises once it runs again (the
  force of the dropped stretch is unknown). The spell ends, with the count in the log, once the
  samples waiting fall to half the bound.
- **Nothing else is ever dropped.** Commands, switch changes, UV faults, ``ReadFailed`` and the
  stop marker always get in, without blocking their producer: they come at human rates
  (commands are rate-limited, switches debounced) and each one matters.
- **Ticks are coalesced.** A ``Tick`` while another is still waiting is left out (not counted
  as a loss): it carries only the time, and every input after the waiting one is later.

It also tells the service watchdog whether the engine keeps up (:meth:`InputQueue.progress`):
when the engine took the input it is handling, and how full the queue is.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import Empty

from dermaguard.core.engine import EngineInput
from dermaguard.core.events import ForceRead, ReadFailed, Tick
from dermaguard.daemon.sd_notify import EngineProgress

log = logging.getLogger(__name__)

#: Real seconds of force samples the queue holds before it drops them.
QUEUE_REAL_S = 2.0
#: Never fewer than this many samples: one second at the chip's highest rate, 80 samples/s.
MIN_BOUND = 80


def sample_bound(rate_sps: int, speed: float = 1.0) -> int:
    """Force samples that :data:`QUEUE_REAL_S` real seconds bring at ``rate_sps`` and ``speed``
    (virtual seconds per real second: a fast simulation brings more per real second)."""
    return max(MIN_BOUND, math.ceil(rate_sps * speed * QUEUE_REAL_S))


class InputQueue:
    """The FIFO between the shell's producers and the engine thread; see the module's policy.

    ``put`` never blocks; ``get`` is for the engine thread only. ``None`` is the stop marker.
    """

    def __init__(self, bound: int, *, now: Callable[[], float] = time.monotonic) -> None:
        if bound < 1:
            raise ValueError(f"bound must be at least 1 force sample, not {bound!r}")
        self.bound = bound
        #: Force samples dropped because the queue was full, since start.
        self.dropped = 0
        #: Most force samples ever waiting at once.
        self.peak = 0
        self._now = now
        self._items: deque[EngineInput | None] = deque()
        self._samples = 0
        self._tick_waiting = False
        self._spell_dropped = 0
        self._busy_since: float | None = None
        self._ready = threading.Condition(threading.Lock())

    def put(self, item: EngineInput | None) -> None:
        """Queue ``item``, or drop it by the policy (a force sample when full, a second tick)."""
        spell_starts = False
        with self._ready:
            if isinstance(item, ForceRead) and self._samples >= self.bound:
                spell_starts = self._drop(item.t)
            elif isinstance(item, Tick) and self._tick_waiting:
                return
            else:
                if isinstance(item, ForceRead):
                    self._samples += 1
                    self.peak = max(self.peak, self._samples)
                elif isinstance(item, Tick):
                    self._tick_waiting = True
                self._items.append(item)
                self._ready.notify()
        # Logged outside the lock: a slow log must not hold up the engine's next input.
        if spell_starts:
            log.warning(
                "input queue full (%d force samples): the engine is not keeping up; dropping "
                "force samples until it catches up",
                self.bound,
            )

    def get(self, timeout: float | None = None) -> EngineInput | None:
        """The next input, waiting for one (``queue.Empty`` after ``timeout`` seconds).

        Calling it means the engine is done with the previous input: from here until it returns
        the engine counts as idle, and from then on as busy with the input it returns.
        """
        ended: tuple[int, int] | None = None
        with self._ready:
            self._busy_since = None
            if not self._ready.wait_for(lambda: bool(self._items), timeout):
                raise Empty
            item = self._items.popleft()
            if isinstance(item, ForceRead):
                self._samples -= 1
                if self._spell_dropped and self._samples <= self.bound // 2:
                    ended = (self._spell_dropped, self.dropped)
                    self._spell_dropped = 0
            elif isinstance(item, Tick):
                self._tick_waiting = False
            self._busy_since = self._now()
        if ended is not None:
            log.warning(
                "the engine caught up: %d force samples were dropped (%d since start)", *ended
            )
        return item

    def qsize(self) -> int:
        """Inputs waiting (force samples and the rest)."""
        with self._ready:
            return len(self._items)

    @property
    def samples_waiting(self) -> int:
        with self._ready:
            return self._samples

    def progress(self) -> EngineProgress:
        """What the service watchdog judges the engine by (read in one go)."""
        with self._ready:
            return EngineProgress(self._busy_since, self._samples, self.bound)

    def summary(self) -> str:
        """``''``, or how many force samples were dropped (for ``systemctl status``)."""
        with self._ready:
            dropped = self.dropped
        return f"{dropped} force samples dropped (engine stalled)" if dropped else ""

    def _drop(self, t: float) -> bool:
        """Count a dropped sample (lock held); whether it starts a spell (then queue the fault)."""
        self.dropped += 1
        self._spell_dropped += 1
        if self._spell_dropped == 1:
            detail = (
                f"the engine fell {self.bound} force samples behind: samples dropped, the force "
                "was unknown meanwhile"
            )
            self._items.append(ReadFailed(t, "engine_stalled", detail))
            self._ready.notify()
            return True
        return False


__all__ = ["MIN_BOUND", "QUEUE_REAL_S", "InputQueue", "sample_bound"]
