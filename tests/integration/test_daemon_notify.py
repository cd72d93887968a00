"""The daemon speaks systemd's notify protocol: to a datagram socket this test binds."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from support import daemon

pytestmark = pytest.mark.subprocess


def test_daemon_notifies_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30.0)
    try:
        proc = daemon.start(
            tmp_path / "state",
            "unsterile_use",
            port=None,
            speed=5,
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"},
        )
        datagrams: list[str] = []
        deadline = time.monotonic() + 60
        while not any("STOPPING=1" in d for d in datagrams):
            assert time.monotonic() < deadline, datagrams
            datagrams.append(sock.recv(4096).decode())
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err
    finally:
        sock.close()
        path.unlink(missing_ok=True)
    ready = [d for d in datagrams if "READY=1" in d]
    assert len(ready) == 1 and "STATUS=case " in ready[0]
    assert datagrams.index(ready[0]) == 0  # nothing before the daemon is ready
    assert any(d == "WATCHDOG=1" for d in datagrams)  # fed while the sampler runs
    assert datagrams[-1].startswith("STOPPING=1")
