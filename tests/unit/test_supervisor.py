"""The supervisor's restart policy on a fake clock: back-off, its reset, silent deaths."""

from __future__ import annotations

import threading
from typing import Any

from dermaguard.common.clock import SimClock
from dermaguard.core.events import ThreadFailed
from dermaguard.daemon.supervisor import Supervisor


class Fake:
    """A thread's life as the supervisor sees it: alive or not, and restarts."""

    def __init__(self) -> None:
        self.up = True
        self.restarts = 0

    def alive(self) -> bool:
        return self.up

    def restart(self) -> None:
        self.restarts += 1
        self.up = True


def hook_args(name: str) -> threading.ExceptHookArgs:
    exc = RuntimeError("boom")
    return threading.ExceptHookArgs((RuntimeError, exc, None, threading.Thread(name=name)))


def make() -> tuple[Supervisor, list[Any], list[float], Fake]:
    now = [0.0]
    reports: list[Any] = []
    sup = Supervisor(
        None,
        SimClock(),
        backoff_min_s=1.0,
        backoff_max_s=4.0,
        healthy_s=60.0,
        monotonic=lambda: now[0],
    )
    sup.bind(reports.append, reports.append)
    fake = Fake()
    sup.watch("status-file", fake.alive, fake.restart)
    return sup, reports, now, fake


def die(sup: Supervisor, fake: Fake) -> None:
    fake.up = False
    sup.thread_failed(hook_args("status-file"))


def test_the_back_off_doubles_up_to_its_cap_and_each_death_is_reported() -> None:
    sup, reports, now, fake = make()
    delays = []
    for _ in range(4):
        die(sup, fake)
        delays.append(reports[-1].restart_in_s)
        now[0] += reports[-1].restart_in_s - 0.001
        sup.poll()
        assert fake.restarts == len(delays) - 1  # not before its time
        now[0] += 0.001
        sup.poll()
        assert fake.restarts == len(delays)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert [r.failures for r in reports] == [1, 2, 3, 4]
    assert all(isinstance(r, ThreadFailed) and r.thread == "status-file" for r in reports)


def test_the_back_off_starts_over_once_the_thread_has_run_long_enough() -> None:
    sup, reports, now, fake = make()
    die(sup, fake)
    now[0] += 1.0
    sup.poll()
    now[0] += 60.0
    sup.poll()  # healthy for a minute
    die(sup, fake)
    assert reports[-1].restart_in_s == 1.0 and reports[-1].failures == 1


def test_a_thread_found_dead_without_an_exception_is_a_failure_too() -> None:
    sup, reports, now, fake = make()
    fake.up = False  # it returned: no hook ran
    sup.poll()
    assert len(reports) == 1 and reports[0].error == "the thread stopped"
    now[0] += 1.0
    sup.poll()
    assert fake.restarts == 1


def test_a_thread_nobody_restarts_is_reported_with_no_restart() -> None:
    sup, reports, _now, _fake = make()
    sup.thread_failed(hook_args("uv-cap"))
    assert reports[0].thread == "uv-cap" and reports[0].restart_in_s is None


def test_a_critical_thread_stops_the_daemon_instead() -> None:
    sup, reports, _now, _fake = make()
    sup.watch_critical("engine", lambda: True)
    sup.thread_failed(hook_args("engine"))
    [failed] = reports
    assert isinstance(failed, RuntimeError) and "engine" in str(failed)
