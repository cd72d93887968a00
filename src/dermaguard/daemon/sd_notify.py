"""systemd's service notification protocol (sd_notify(3)), with no dependency.

Under ``Type=notify`` systemd considers the daemon started only when it says ``READY=1``, and
with ``WatchdogSec=`` it restarts the daemon when ``WATCHDOG=1`` stops arriving. Both are only
worth something if they are tied to the work that matters, the alarm path:
:class:`ServiceHeartbeat` says ready once the force sampler turns, and pats the watchdog only
while it keeps turning and the engine keeps up with its input queue (:func:`engine_verdict`). A
hung sampler, or an engine that is stuck or falling behind, ends in a restart rather than a
silent alarm.

The protocol is one ``AF_UNIX`` datagram of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``. Nothing
here may stop the daemon: a send that fails (systemd restarted, socket gone) is logged once at
debug level and reported as ``False``, never raised.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Poll period before READY=1, so "ready" follows the first readings closely.
READY_POLL_S = 0.05
#: The engine keeps up only if it handled an input within this many seconds (or is idle).
ENGINE_STALL_S = 0.5
#: Longest STATUS= text sent; systemd keeps a short line, the journal shows it in full anyway.
MAX_STATUS_CHARS = 400


def watchdog_interval_s(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds, or None when this process must not send WATCHDOG=1.

    As sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` must be a positive integer, and when
    ``$WATCHDOG_PID`` is set it must be this process's pid (the variables leak into children,
    which must not pat the watchdog for their parent).
    """
    usec_text = environ.get("WATCHDOG_USEC", "")
    if not usec_text:
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.debug("ignoring invalid WATCHDOG_USEC=%r", usec_text)
        return None
    if usec <= 0:
        return None
    pid_text = environ.get("WATCHDOG_PID", "")
    if pid_text:
        try:
            watchdog_pid = int(pid_text)
        except ValueError:
            log.debug("ignoring the watchdog: invalid WATCHDOG_PID=%r", pid_text)
            return None
        if watchdog_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 1_000_000


def _socket_address(value: str) -> str | None:
    """A filesystem path as is; ``@name`` is the abstract namespace (a leading NUL byte)."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # vsock: and relative paths are not used for system services here


def _one_line(text: str) -> str:
    """A value must not start a new ``KEY=VALUE`` line."""
    flat = " ".join(text.split())
    return flat[:MAX_STATUS_CHARS]


@dataclass(frozen=True, slots=True)
class EngineProgress:
    """The engine thread as the watchdog sees it (its input queue reports this)."""

    #: When (heartbeat clock) the engine took the input it is handling; None while it waits
    #: for one. The engine handled its previous input at that moment.
    busy_since: float | None
    #: Force samples waiting in its queue, and the most the queue holds.
    queued: int
    bound: int


def engine_verdict(progress: EngineProgress, now: float) -> str:
    """``''`` while the engine keeps up, else why it does not (the watchdog then starves).

    It keeps up when it handled an input within :data:`ENGINE_STALL_S` (or has none to handle)
    and its queue is below its bound. A full queue means samples are being dropped: the
    over-pressure alarm can no longer follow the force, whatever the engine is doing.
    """
    if progress.queued >= progress.bound:
        return f"its input queue is full ({progress.queued} of {progress.bound} force samples)"
    if progress.busy_since is not None and now - progress.busy_since > ENGINE_STALL_S:
        return f"it has handled no input for {now - progress.busy_since:.2f} s"
    return ""


class Notifier:
    """Sends notification datagrams to systemd; see :meth:`from_environ`."""

    def __init__(self, address: str, *, watchdog_interval_s: float | None = None) -> None:
        """``address``: ``$NOTIFY_SOCKET`` as systemd sets it (``/path`` or ``@abstract``)."""
        target = _socket_address(address)
        if target is None:
            raise ValueError(f"unsupported notification socket address: {address!r}")
        self.address = address
        #: The watchdog timeout (s), or None when no WATCHDOG=1 is expected from this process.
        self.watchdog_interval_s = watchdog_interval_s
        self._target = target
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False
        self._closed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """The notifier systemd asked for, or None when not run under ``Type=notify``."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        if _socket_address(address) is None:
            log.debug("NOTIFY_SOCKET=%r is not supported, not notifying systemd", address)
            return None
        return cls(address, watchdog_interval_s=watchdog_interval_s(env))

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False (never an exception) if it failed."""
        for line in lines:
            if "=" not in line or "\n" in line:
                raise ValueError(f"not a KEY=VALUE line: {line!r}")
        if not lines:
            return True
        data = "\n".join(lines).encode()
        with self._lock:
            if self._closed:
                return False
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(data, self._target)
            except OSError as exc:
                if not self._failing:
                    # Once per failing spell: systemd being gone must not flood the journal.
                    log.debug("sd_notify to %s failed: %s", self.address, exc)
                    self._failing = True
                return False
            if self._failing:
                log.debug("sd_notify to %s works again", self.address)
                self._failing = False
            return True

    def ready(self, status: str | None = None) -> bool:
        """The service is up: systemd lets units ordered after it start."""
        return self.send("READY=1", *self._status_line(status))

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status``."""
        return self.send(*self._status_line(text))

    def watchdog(self) -> bool:
        """Pat the watchdog (only meaningful when :attr:`watchdog_interval_s` is set)."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun: systemd waits up to TimeoutStopSec= instead of counting a hang."""
        return self.send("STOPPING=1", *self._status_line(status))

    def close(self) -> None:
        """Release the socket; later sends return False."""
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    @staticmethod
    def _status_line(text: str | None) -> tuple[str, ...]:
        return () if text is None else (f"STATUS={_one_line(text)}",)


class ServiceHeartbeat(threading.Thread):
    """Ties READY=1 and WATCHDOG=1 to the alarm path making progress.

    ``samples`` returns a counter that grows while the sampler runs (its loop count);
    ``engine`` the engine's :class:`EngineProgress`, on the same clock as ``clock``; ``status``
    the text for ``systemctl status``. READY=1 goes out once the counter has grown since the
    first check; after that, every ``interval_s``, WATCHDOG=1 goes out only if the counter grew
    since the previous check *and* the engine keeps up (:func:`engine_verdict`), and STATUS=
    when the text changed. The decisions are in :meth:`tick`, which the thread calls and tests
    call directly.
    """

    def __init__(
        self,
        notifier: Notifier,
        samples: Callable[[], int],
        status: Callable[[], str],
        *,
        engine: Callable[[], EngineProgress],
        failed: Callable[[], str | None] = lambda: None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``failed``: why the alarm path is down for good (an internal error), or None."""
        super().__init__(name="sd-notify", daemon=True)
        if interval_s is None:
            # Half the timeout: one late or missed check is survived, two in a row are not.
            watchdog = notifier.watchdog_interval_s
            interval_s = watchdog / 2 if watchdog is not None else 1.0
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s!r}")
        self.notifier = notifier
        self.interval_s = interval_s
        self.ready_poll_s = min(READY_POLL_S, interval_s)
        self._samples = samples
        self._engine = engine
        self._failed = failed
        self._status = status
        self._starving: str | None = None
        self._clock = clock
        self._halt = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._ready = False
        self._baseline: int | None = None
        self._last_count = 0
        self._last_status: str | None = None
        self._due = -float("inf")
        self._failed_callables: set[str] = set()

    @property
    def is_ready(self) -> bool:
        """Whether READY=1 has been decided on."""
        return self._ready

    def tick(self, now: float) -> list[str]:
        """The lines to send at time ``now`` (``[]`` when nothing is due or nothing to say)."""
        if now < self._due:
            return []
        count = self._call_samples()
        if not self._ready:
            self._due = now + self.ready_poll_s
            if count is None or self._failed():
                return []  # (a daemon that failed while starting is never ready)
            if self._baseline is None:
                self._baseline = count
                return []
            if count <= self._baseline:
                return []
            self._ready = True
            self._last_count = count
            self._due = now + self.interval_s
            self._last_status = self._call_status() or "running"
            return ["READY=1", f"STATUS={self._last_status}"]
        self._due = now + self.interval_s
        lines: list[str] = []
        # No WATCHDOG=1 when the counter did not move or the engine does not keep up (or either
        # could not be read): systemd then restarts a daemon whose alarm path has stopped,
        # which is the point of the watchdog.
        why = self._why_not_alive(count, now)
        if count is not None and count > self._last_count:
            self._last_count = count
        if self.notifier.watchdog_interval_s is not None:
            if not why:
                lines.append("WATCHDOG=1")
            self._note_starving(why)
        text = self._call_status()
        if text is not None and text != self._last_status:
            self._last_status = text
            lines.append(f"STATUS={text}")
        return lines

    def _why_not_alive(self, count: int | None, now: float) -> str:
        """``''`` when the alarm path made progress since the last check, else why not."""
        down = self._failed()
        if down:
            return down  # the sampler may still turn for a moment: it counts for nothing now
        if count is None:
            return "the sampler's progress could not be read"
        if count <= self._last_count:
            return "the sampler made no progress"
        try:
            progress = self._engine()
        except Exception:
            self._log_failure("engine")
            return "the engine's progress could not be read"
        self._failed_callables.discard("engine")
        verdict = engine_verdict(progress, now)
        return f"the engine does not keep up: {verdict}" if verdict else ""

    def _note_starving(self, why: str) -> None:
        # Once per spell: the journal then says why systemd is about to restart the daemon.
        if why and self._starving is None:
            log.error("not feeding the service watchdog: %s", why)
        elif not why and self._starving is not None:
            log.warning("feeding the service watchdog again")
        self._starving = why or None

    def run(self) -> None:
        while not self._halt.is_set():
            lines = self.tick(self._clock())
            if lines:
                self.notifier.send(*lines)
            wait = self._due - self._clock()
            self._halt.wait(min(max(wait, 0.001), self.interval_s))

    def halt(self, status: str | None = None, timeout: float = 1.0) -> None:
        """End WATCHDOG=1 without STOPPING=1: systemd's watchdog goes on counting, so a
        shutdown that hangs after an internal error is killed and restarted. ``stop`` still
        says STOPPING=1 later."""
        self._halt.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout)
        if status is not None:
            self.notifier.status(status)

    def stop(self, status: str | None = None, timeout: float = 1.0) -> None:
        """End the thread, then say STOPPING=1 (once; safe from any thread, started or not)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._halt.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout)
        self.notifier.stopping(status)

    def _call_samples(self) -> int | None:
        try:
            value = self._samples()
        except Exception:
            self._log_failure("samples")
            return None
        self._failed_callables.discard("samples")
        return value

    def _call_status(self) -> str | None:
        try:
            text = _one_line(self._status())
        except Exception:
            self._log_failure("status")
            return None
        self._failed_callables.discard("status")
        return text

    def _log_failure(self, name: str) -> None:
        # Once per failing spell, with the traceback: it is a bug in the caller's callable.
        if name not in self._failed_callables:
            self._failed_callables.add(name)
            log.exception("sd_notify heartbeat: the %s callable failed", name)


__all__ = [
    "ENGINE_STALL_S",
    "EngineProgress",
    "Notifier",
    "ServiceHeartbeat",
    "engine_verdict",
    "watchdog_interval_s",
]
