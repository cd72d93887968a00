"""``dermaguard web`` as a process: what it says when it stops (no browser needed)."""

from __future__ import annotations

import socket
from pathlib import Path

from support.broker import Broker
from support.daemon import run_cli
from support.ports import free_port
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


def test_show_url_gives_the_address_and_port_the_running_server_listens_on(
    broker: Broker, tmp_path: Path
) -> None:
    """Started without a terminal on a loopback address and its own port (a service, a pipe),
    the dashboard writes down what it bound; ``--show-url`` links there, not to the config's
    defaults, and the token stays out of the log."""
    state = tmp_path / "state"
    server = WebServer(state, broker.port)
    try:
        shown = run_cli("web", "--simulate", "--show-url", state=state)
        assert shown.returncode == 0, shown.stderr
        assert f"  http://127.0.0.1:{server.port}/?token={server.token}\n" in shown.stdout
        assert "not running" not in shown.stdout
        log = server.log()
        assert f"dashboard listening on http://127.0.0.1:{server.port} " in log, log
        assert "--show-url" in log and server.token not in log
    finally:
        server.close()
    # Stopped: the address is forgotten, and the link says it comes from the config.
    assert not (state / "dermaguard" / "web-address").exists()
    stale = run_cli("web", "--simulate", "--show-url", state=state)
    assert stale.returncode == 0, stale.stderr
    assert "The dashboard is not running now" in stale.stdout


def test_a_port_in_use_or_a_foreign_address_is_said_plainly_and_never_claimed(
    broker: Broker, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli(
            "web", "--simulate", "--mqtt", f"127.0.0.1:{broker.port}", "--listen", "127.0.0.1",
            "--port", str(port), state=state,
        )  # fmt: skip
    assert busy.returncode == 1, busy.stderr
    assert f"another program already listens on port {port}" in busy.stderr
    assert "listening on" not in busy.stderr
    foreign = run_cli(
        "web", "--simulate", "--mqtt", f"127.0.0.1:{broker.port}", "--listen", "192.0.2.55",
        "--port", str(free_port()), state=state,
    )  # fmt: skip
    assert foreign.returncode == 2, foreign.stderr
    assert "this machine has no address 192.0.2.55" in foreign.stderr
    assert "another program" not in foreign.stderr and "listening on" not in foreign.stderr
