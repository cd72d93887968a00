"""``dermaguard web`` as a process: what it says when it stops (no browser needed)."""

from __future__ import annotations

from pathlib import Path

from support.broker import Broker
from support.waiting import wait_until
from support.web import WebServer


def test_stopping_the_dashboard_does_not_report_a_lost_broker(
    broker: Broker, tmp_path: Path
) -> None:
    """A person stopping the service must not read a broker warning that never happened."""
    server = WebServer(tmp_path / "state", broker.port)
    try:
        assert wait_until(lambda: "connected to the broker" in server.log()), server.log()
    finally:
        server.close()
    log = server.log()
    assert server.proc.returncode == 0, log
    assert "no connection to the broker" not in log, log
    assert broker.running, "the broker itself stayed up throughout"
