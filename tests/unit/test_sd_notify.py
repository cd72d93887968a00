"""sd_notify: the exact datagrams systemd receives, and the heartbeat's decisions.

Datagrams are read from a real ``AF_UNIX`` socket (a path in tmp_path, or the abstract
namespace). A datagram socket delivers inside ``sendto``, so "nothing was sent" is checked with
a non-blocking read, and the threaded test waits on the socket with a timeout, never on a sleep.
The heartbeat's timing is tested through ``tick(now)`` with a fake clock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dermaguard.daemon.sd_notify import (
    ENGINE_STALL_S,
    EngineProgress,
    Notifier,
    ServiceHeartbeat,
    engine_verdict,
    watchdog_interval_s,
)

RECV_TIMEOUT_S = 5.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound notification socket on a filesystem path, and its $NOTIFY_SOCKET value."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield sock, str(path)
    sock.close()


@pytest.fixture
def abstract_server() -> Iterator[tuple[socket.socket, str]]:
    """A bound notification socket in the abstract namespace, and its $NOTIFY_SOCKET value."""
    name = f"dermaguard-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield sock, "@" + name
    sock.close()


def recv(sock: socket.socket, timeout: float = RECV_TIMEOUT_S) -> bytes:
    sock.settimeout(timeout)
    return sock.recv(4096)


def pending(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued, without waiting."""
    out: list[bytes] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


def notifier_for(address: str, **env: str) -> Notifier:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address, **env})
    assert notifier is not None
    return notifier


# -- Notifier -----------------------------------------------------------------------------


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:9"}])
def test_no_notifier_without_a_usable_notify_socket(environ: dict[str, str]) -> None:
    assert Notifier.from_environ(environ) is None


def test_from_environ_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch, server: tuple[socket.socket, str]
) -> None:
    _, address = server
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier.from_environ()
    assert notifier is not None
    assert notifier.address == address
    assert notifier.watchdog_interval_s is None
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert Notifier.from_environ() is None


def test_send_is_one_datagram_of_lines(server: tuple[socket.socket, str]) -> None:
    sock, address = server
    notifier = notifier_for(address)
    assert notifier.send("READY=1", "STATUS=sampling at 80 Hz")
    assert recv(sock) == b"READY=1\nSTATUS=sampling at 80 Hz"
    assert pending(sock) == []
    notifier.close()


def test_convenience_messages(server: tuple[socket.socket, str]) -> None:
    sock, address = server
    notifier = notifier_for(address)
    assert notifier.ready("up")
    assert notifier.ready()
    assert notifier.status("case sterile\nzone ok")  # a value never starts a new line
    assert notifier.watchdog()
    assert notifier.stopping("bye")
    assert notifier.stopping()
    assert pending(sock) == [
        b"READY=1\nSTATUS=up",
        b"READY=1",
        b"STATUS=case sterile zone ok",
        b"WATCHDOG=1",
        b"STOPPING=1\nSTATUS=bye",
        b"STOPPING=1",
    ]
    notifier.close()


def test_abstract_namespace_socket(abstract_server: tuple[socket.socket, str]) -> None:
    sock, address = abstract_server
    notifier = notifier_for(address)
    assert notifier.ready("abstract")
    assert recv(sock) == b"READY=1\nSTATUS=abstract"
    notifier.close()


def test_a_malformed_line_is_a_programming_error(server: tuple[socket.socket, str]) -> None:
    sock, address = server
    notifier = notifier_for(address)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        notifier.send("READY")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        notifier.send("STATUS=a\nWATCHDOG=1")
    assert pending(sock) == []


def test_a_vanished_socket_does_not_raise_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = notifier_for(str(path))
    assert notifier.watchdog()
    sock.close()
    path.unlink()  # systemd went away
    caplog.set_level(logging.DEBUG, logger="dermaguard.daemon.sd_notify")
    assert notifier.watchdog() is False
    assert notifier.stopping("bye") is False
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG
    notifier.close()
    assert notifier.watchdog() is False  # closed: still no exception


def test_nobody_listening_on_an_abstract_name_does_not_raise() -> None:
    notifier = notifier_for(f"@dermaguard-nobody-{uuid.uuid4().hex}")
    assert notifier.ready("x") is False
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "250000"}, 0.25),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "4242"}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "4243"}, None),  # another process's
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": ""}, 10.0),
    ],
)
def test_watchdog_usec_and_pid(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_s(env, pid=4242) == expected


def test_watchdog_pid_defaults_to_this_process(server: tuple[socket.socket, str]) -> None:
    _, address = server
    ours = notifier_for(address, WATCHDOG_USEC="4000000", WATCHDOG_PID=str(os.getpid()))
    assert ours.watchdog_interval_s == 4.0
    theirs = notifier_for(address, WATCHDOG_USEC="4000000", WATCHDOG_PID=str(os.getpid() + 1))
    assert theirs.watchdog_interval_s is None


# -- ServiceHeartbeat.tick: the decisions, on a fake clock ------------------------------------


#: An engine waiting for input with an empty queue: it keeps up.
IDLE_ENGINE = EngineProgress(busy_since=None, queued=0, bound=160)


class Sampler:
    """A sample counter, the engine's progress and a status text the test moves by hand."""

    def __init__(self) -> None:
        self.count = 0
        self.text = "sampling"
        self.progress = IDLE_ENGINE

    def samples(self) -> int:
        return self.count

    def engine(self) -> EngineProgress:
        return self.progress

    def status(self) -> str:
        return self.text


def heartbeat(
    sampler: Sampler, watchdog_s: float | None = 10.0, interval_s: float | None = None
) -> ServiceHeartbeat:
    # Never sends in these tests: tick() only decides.
    notifier = Notifier("@dermaguard-unused", watchdog_interval_s=watchdog_s)
    return ServiceHeartbeat(
        notifier,
        sampler.samples,
        sampler.status,
        engine=sampler.engine,
        interval_s=interval_s,
        clock=lambda: 0.0,
    )


def test_default_interval_is_half_the_watchdog_or_one_second() -> None:
    assert heartbeat(Sampler(), watchdog_s=10.0).interval_s == 5.0
    assert heartbeat(Sampler(), watchdog_s=None).interval_s == 1.0
    assert heartbeat(Sampler(), watchdog_s=10.0, interval_s=2.0).interval_s == 2.0
    with pytest.raises(ValueError, match="positive"):
        heartbeat(Sampler(), interval_s=0.0)


def test_ready_only_once_samples_grow_after_start() -> None:
    s = Sampler()
    s.count = 500  # counted before the heartbeat started: not proof that sampling runs now
    hb = heartbeat(s)
    now = 0.0
    for _ in range(100):  # the sampler is stuck from the start: never READY
        assert hb.tick(now) == []
        now += hb.ready_poll_s
    assert not hb.is_ready
    s.count += 1
    assert hb.tick(now) == ["READY=1", "STATUS=sampling"]
    assert hb.is_ready


def test_ready_is_checked_often_not_once_per_interval() -> None:
    s = Sampler()
    hb = heartbeat(s, watchdog_s=10.0)
    assert hb.tick(0.0) == []  # baseline
    s.count = 1
    assert hb.tick(0.01) == []  # not due yet
    assert hb.tick(hb.ready_poll_s) == ["READY=1", "STATUS=sampling"]
    assert hb.ready_poll_s < hb.interval_s


def ready_heartbeat(s: Sampler, **kwargs: float | None) -> tuple[ServiceHeartbeat, float]:
    hb = heartbeat(s, **kwargs)
    assert hb.tick(0.0) == []
    s.count += 1
    assert hb.tick(1.0) == ["READY=1", f"STATUS={s.text}"]
    return hb, 1.0


def test_watchdog_only_while_samples_grow() -> None:
    s = Sampler()
    hb, t = ready_heartbeat(s)
    assert hb.interval_s == 5.0
    s.count += 80
    assert hb.tick(t + 4.9) == []  # not due
    assert hb.tick(t + 5.0) == ["WATCHDOG=1"]
    t += 5.0
    # The sampler hangs: no WATCHDOG=1 however long it lasts, so systemd restarts the daemon.
    for i in range(1, 10):
        assert hb.tick(t + 5.0 * i) == []
    t += 5.0 * 9
    s.count += 1
    assert hb.tick(t + 5.0) == ["WATCHDOG=1"]


def test_no_watchdog_once_the_alarm_path_has_failed_though_the_sampler_still_turns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After an internal error the sampler may run for a moment more: that is no life."""
    s = Sampler()
    down: list[str] = []
    notifier = Notifier("@dermaguard-unused", watchdog_interval_s=10.0)
    hb = ServiceHeartbeat(
        notifier,
        s.samples,
        s.status,
        engine=s.engine,
        failed=lambda: down[0] if down else None,
        clock=lambda: 0.0,
    )
    assert hb.tick(0.0) == []
    s.count += 1
    assert hb.tick(1.0) == ["READY=1", "STATUS=sampling"]
    s.count += 80
    assert hb.tick(6.0) == ["WATCHDOG=1"]
    down.append("the alarm path failed")
    s.count += 80
    assert hb.tick(11.0) == []
    assert "not feeding the service watchdog: the alarm path failed" in caplog.text


def test_a_daemon_that_failed_while_starting_is_never_ready() -> None:
    s = Sampler()
    notifier = Notifier("@dermaguard-unused", watchdog_interval_s=10.0)
    hb = ServiceHeartbeat(
        notifier, s.samples, s.status, engine=s.engine, failed=lambda: "the alarm path failed"
    )
    assert hb.tick(0.0) == []
    s.count += 1
    assert hb.tick(1.0) == []
    assert not hb.is_ready


def test_halt_ends_the_watchdog_lines_without_stopping(
    server: tuple[socket.socket, str],
) -> None:
    """After an internal error the watchdog must go on counting until the exit (then STOPPING=1)."""
    sock, address = server
    s = LiveSampler()
    hb = live_heartbeat(address, s)
    hb.start()
    s.switch(live=True, text="sampling")
    assert recv(sock) == b"READY=1\nSTATUS=sampling"
    hb.halt("stopping after an internal error")
    assert not hb.is_alive()
    lines = pending(sock)
    assert lines[-1] == b"STATUS=stopping after an internal error"
    assert all(line == b"WATCHDOG=1" for line in lines[:-1])
    hb.stop()
    assert pending(sock) == [b"STOPPING=1"]


def test_engine_verdict_keeps_up_only_when_recent_or_idle_and_below_the_bound() -> None:
    assert engine_verdict(IDLE_ENGINE, 100.0) == ""
    busy = EngineProgress(busy_since=100.0, queued=3, bound=160)
    assert engine_verdict(busy, 100.0 + ENGINE_STALL_S) == ""
    assert "no input for" in engine_verdict(busy, 100.0 + ENGINE_STALL_S + 0.01)
    full = EngineProgress(busy_since=100.0, queued=160, bound=160)
    assert "queue is full" in engine_verdict(full, 100.0)


def test_watchdog_starves_while_the_engine_is_stuck_though_the_sampler_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sampler keeps turning while the engine is blocked: that alone must not feed the
    watchdog (the over-pressure alarm is decided by the engine)."""
    s = Sampler()
    hb, t = ready_heartbeat(s)
    with caplog.at_level(logging.ERROR, logger="dermaguard.daemon.sd_notify"):
        s.count += 80
        s.progress = EngineProgress(busy_since=t + 4.8, queued=3, bound=160)
        assert hb.tick(t + 5.0) == ["WATCHDOG=1"]  # took its input 0.2 s ago: keeping up
        t += 5.0
        # The engine blocks on that input; the sampler turns on and its queue fills.
        s.count += 80
        s.progress = EngineProgress(busy_since=t - 0.2, queued=83, bound=160)
        assert hb.tick(t + 5.0) == []
        # It moves again but cannot keep up: the queue is full, samples are being dropped.
        s.count += 80
        s.progress = EngineProgress(busy_since=t + 9.99, queued=160, bound=160)
        assert hb.tick(t + 10.0) == []
    starving = [r.getMessage() for r in caplog.records if "watchdog" in r.getMessage()]
    assert starving == [
        "not feeding the service watchdog: the engine does not keep up: it has handled no "
        "input for 5.20 s"
    ]
    s.count += 80
    s.progress = IDLE_ENGINE
    assert hb.tick(t + 15.0) == ["WATCHDOG=1"]


def test_checks_are_counted_from_the_last_check_not_from_start() -> None:
    s = Sampler()
    hb, t = ready_heartbeat(s, interval_s=1.0)
    s.count += 1
    assert hb.tick(t + 3.7) == ["WATCHDOG=1"]  # a late tick (a busy machine) still pats
    s.count += 1
    assert hb.tick(t + 4.6) == []  # next due at t + 4.7
    assert hb.tick(t + 4.7) == ["WATCHDOG=1"]


def test_status_only_when_it_changes() -> None:
    s = Sampler()
    hb, t = ready_heartbeat(s)
    s.count += 1
    assert hb.tick(t + 5.0) == ["WATCHDOG=1"]
    s.count += 1
    s.text = "session: zone ok"
    assert hb.tick(t + 10.0) == ["WATCHDOG=1", "STATUS=session: zone ok"]
    s.text = "sensor fault"  # a stuck sampler still reports its status, without WATCHDOG
    assert hb.tick(t + 15.0) == ["STATUS=sensor fault"]
    assert hb.tick(t + 20.0) == []


def test_no_watchdog_lines_when_systemd_expects_none() -> None:
    s = Sampler()
    hb, t = ready_heartbeat(s, watchdog_s=None)
    s.count += 1
    s.text = "changed"
    assert hb.tick(t + 1.0) == ["STATUS=changed"]


def test_failing_callables_do_not_stop_the_heartbeat(caplog: pytest.LogCaptureFixture) -> None:
    s = Sampler()
    hb, t = ready_heartbeat(s, interval_s=1.0)
    broken = True

    def samples() -> int:
        if broken:
            raise RuntimeError("boom")
        return s.count

    def status() -> str:
        raise RuntimeError("no status")

    hb._samples = samples
    hb._status = status
    with caplog.at_level(logging.ERROR, logger="dermaguard.daemon.sd_notify"):
        s.count += 1
        assert hb.tick(t + 1.0) == []  # progress unknown: no WATCHDOG
        assert hb.tick(t + 2.0) == []
    assert len([r for r in caplog.records if "samples" in r.getMessage()]) == 1
    broken = False
    assert hb.tick(t + 3.0) == ["WATCHDOG=1"]


def test_stop_sends_stopping_once_even_if_never_started(
    server: tuple[socket.socket, str],
) -> None:
    sock, address = server
    s = Sampler()
    hb = ServiceHeartbeat(notifier_for(address), s.samples, s.status, engine=s.engine)
    hb.stop("shutting down")
    hb.stop()
    assert pending(sock) == [b"STOPPING=1\nSTATUS=shutting down"]


# -- the real thread --------------------------------------------------------------------


class LiveSampler:
    """A counter that grows on every read while live; tells the test each time it is read.

    A change the test asks for (``switch``) takes effect inside the next read, so the heartbeat
    never sees half of it (a grown counter with the new status, say).
    """

    def __init__(self) -> None:
        self.live = False
        self.value = 0
        self.text = "starting"
        self.reads = 0
        self.pending: tuple[bool, str] | None = None
        self.changed = threading.Condition()

    def switch(self, *, live: bool, text: str) -> None:
        with self.changed:
            self.pending = (live, text)

    def samples(self) -> int:
        with self.changed:
            if self.pending is not None:
                self.live, self.text = self.pending
                self.pending = None
            elif self.live:
                self.value += 1
            self.reads += 1
            self.changed.notify_all()
            return self.value

    def status(self) -> str:
        with self.changed:
            return self.text

    def wait_reads(self, n: int) -> None:
        """Until the heartbeat has read the counter ``n`` more times."""
        with self.changed:
            target = self.reads + n
            assert self.changed.wait_for(lambda: self.reads >= target, RECV_TIMEOUT_S)


def live_heartbeat(address: str, s: LiveSampler) -> ServiceHeartbeat:
    """A heartbeat on ``s`` with WATCHDOG_USEC=100 ms (its interval is then 50 ms)."""
    notifier = notifier_for(address, WATCHDOG_USEC="100000", WATCHDOG_PID=str(os.getpid()))
    return ServiceHeartbeat(notifier, s.samples, s.status, engine=lambda: IDLE_ENGINE)


def test_thread_sends_ready_watchdog_status_and_stopping(
    server: tuple[socket.socket, str],
) -> None:
    sock, address = server
    s = LiveSampler()
    hb = live_heartbeat(address, s)
    assert hb.interval_s == pytest.approx(0.05)
    hb.start()
    try:
        s.wait_reads(2)  # baseline taken, the counter has not moved: not ready
        assert pending(sock) == []
        s.switch(live=True, text="sampling")
        # That read starts the count, the next one grows it: READY=1.
        assert recv(sock) == b"READY=1\nSTATUS=sampling"
        assert recv(sock) == b"WATCHDOG=1"
        assert recv(sock) == b"WATCHDOG=1"
        # The sampler hangs: the counter stops where the heartbeat last read it.
        s.switch(live=False, text="stuck")
        while (datagram := recv(sock)) != b"STATUS=stuck":
            assert datagram == b"WATCHDOG=1"  # sent before the hang
        s.wait_reads(4)
        assert pending(sock) == []  # several checks, no WATCHDOG=1 while stuck
    finally:
        hb.stop("bye")
    assert not hb.is_alive()
    assert pending(sock) == [b"STOPPING=1\nSTATUS=bye"]
    hb.notifier.close()
