"""``dermaguard web`` as a process: what it says when it stops (no browser needed)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from support.broker import Broker
from support.web import WebServer


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    done = threading.Event()
    timer = threading.Timer(timeout, done.set)
    timer.start()
    try:
        while not done.is_set():
            if predicate():
                return True
            done.wait(0.05)
        return predicate()
    finally:
        timer.cancel()


def test_stopping_the_dashboard_does_not_report_a_lost_broker(
    broker: Broker, tmp_path: Path
) -> None:
    """A person stopping the service must not read a broker warning that never happened."""
    server = WebServer(tmp_path / "state", broker.port)
    try:
        assert wait_for(lambda: "connected to the broker" in server.log()), server.log()
    finally:
        server.close()
    log = server.log()
    assert server.proc.returncode == 0, log
    assert "no connection to the broker" not in log, log
    assert broker.running, "the broker itself stayed up throughout"
