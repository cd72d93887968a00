"""Supervision of the daemon's threads: a helper that dies is restarted, the alarm path is not.

An exception in any thread switches UV-C off at once (S3) through :meth:`CaseIO.trip`, which
also tells the engine (``UvLockedOut``: a running cycle aborts, never counted as disinfecting).
What happens next depends on the thread (docs/ARCHITECTURE.md, "Threads"):

* a helper (store writer, MQTT publisher, paho's network loop, status file, calibration saver,
  ticker) is reported (``ThreadFailed`` → the ``thread_failed`` event, the status file) and
  started again after a back-off that doubles from ``backoff_min_s`` to ``backoff_max_s`` and
  starts over once it has run for ``healthy_s``: a bug in one of them must not leave a daemon
  that looks alive while it stores or publishes nothing;
* a one-shot thread (a timer, a pattern) is only reported: there is nothing to restart;
* the engine or the sampler is the alarm path: without it the daemon cannot warn, so it stops
  (UV locked out, exit 70) for systemd to restart it.

Restarts happen in :meth:`Supervisor.poll`, called by the daemon's main thread, which no helper
can take down with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dermaguard.common.clock import Clock
from dermaguard.core.events import Input, ThreadFailed
from dermaguard.hw.case_io import CaseIO

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
#: A restarted thread that has run this long (real seconds) starts its back-off over.
HEALTHY_S = 60.0


@dataclass
class _Watched:
    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None] | None  # None: critical, the daemon stops instead
    failures: int = 0
    due: float | None = None  # when to restart it (real monotonic seconds)
    since: float = 0.0  # when it was last started


class Supervisor:
    """Watches named threads; :meth:`thread_failed` is the process's thread exception hook."""

    def __init__(
        self,
        case: CaseIO | None,
        clock: Clock,
        *,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        healthy_s: float = HEALTHY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.case = case
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.healthy_s = healthy_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._others: dict[str, int] = {}  # failures of threads nobody restarts
        self._put: Callable[[Input], None] | None = None
        self._fail: Callable[[BaseException], None] | None = None
        #: Restarts done, by thread name (for logs and tests).
        self.restarts: dict[str, int] = {}

    def bind(self, put: Callable[[Input], None], fail: Callable[[BaseException], None]) -> None:
        """Where reports go (the engine's queue) and how the daemon stops (the runtime)."""
        self._put, self._fail = put, fail

    def watch(self, name: str, alive: Callable[[], bool], restart: Callable[[], None]) -> None:
        """Restart the thread ``name`` (or ``name-…``) with ``restart`` when it dies."""
        self._watched[name] = _Watched(name, alive, restart, since=self._monotonic())

    def watch_critical(self, name: str, alive: Callable[[], bool]) -> None:
        """The daemon stops when the thread ``name`` dies: the alarm path cannot run without it."""
        self._watched[name] = _Watched(name, alive, None)

    # -- any thread (the dying one) ------------------------------------------------------------

    def thread_failed(self, args: threading.ExceptHookArgs) -> None:
        """The thread exception hook: UV off first (S3), then report and plan the restart."""
        name = args.thread.name if args.thread is not None else "unknown"
        if self.case is not None:
            self.case.trip(f"thread_failed:{name}")
        self._failed(name, repr(args.exc_value))

    def _failed(self, thread_name: str, error: str) -> None:
        watched = self._match(thread_name)
        name = watched.name if watched is not None else thread_name
        if watched is not None and watched.restart is None:
            log.critical("the %s thread failed (%s): the alarm path cannot run", name, error)
            if self._fail is not None:
                self._fail(RuntimeError(f"the {name} thread failed: {error}"))
            return
        with self._lock:
            if watched is None:
                failures = self._others[name] = self._others.get(name, 0) + 1
                delay: float | None = None
            else:
                watched.failures += 1
                failures = watched.failures
                delay = min(self.backoff_min_s * 2 ** (failures - 1), self.backoff_max_s)
                watched.due = self._monotonic() + delay
        log.error(
            "thread %s failed (%s): UV-C off%s",
            name,
            error,
            "" if delay is None else f", restarting it in {delay:g} s",
        )
        if self._put is not None:
            self._put(ThreadFailed(self.clock.monotonic(), name, error, delay, failures))

    def _match(self, thread_name: str) -> _Watched | None:
        for name, watched in self._watched.items():
            if thread_name == name or thread_name.startswith(name + "-"):
                return watched
        return None

    # -- main thread ---------------------------------------------------------------------------

    def poll(self) -> None:
        """Restart what is due; a thread found dead without an exception is a failure too."""
        now = self._monotonic()
        for watched in list(self._watched.values()):
            with self._lock:
                due = watched.due
            if due is None:
                if not watched.alive():
                    if self.case is not None:
                        self.case.trip(f"thread_failed:{watched.name}")
                    self._failed(watched.name, "the thread stopped")
                elif watched.failures and now - watched.since >= self.healthy_s:
                    watched.failures = 0
                continue
            if now < due or watched.restart is None:
                continue
            with self._lock:
                watched.due = None
                watched.since = now
            try:
                watched.restart()
            except Exception as exc:
                log.exception("restarting the %s thread failed", watched.name)
                self._failed(watched.name, repr(exc))
                continue
            self.restarts[watched.name] = self.restarts.get(watched.name, 0) + 1
            log.warning("thread %s restarted", watched.name)
