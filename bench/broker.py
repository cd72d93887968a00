"""A throw-away Mosquitto for the benchmarks: a free loopback port, started and stopped here.

Benchmarks never use a broker already on the machine: they measure against one they own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

MOSQUITTO = "/usr/sbin/mosquitto"
LOOPBACK = "127.0.0.1"


class BenchFailure(Exception):
    """Something the figures depend on went wrong (lost events, a stalled client)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child: SIGTERM when the benchmark dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def mosquitto_version(binary: str = MOSQUITTO) -> str:
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"mosquitto version (\S+)", out)
    return found.group(1) if found else "unknown"


class Broker:
    """A throw-away Mosquitto on a free loopback port, configured for throughput."""

    def __init__(self, workdir: Path, binary: str = MOSQUITTO) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        conf = [
            f"listener {self.port} {LOOPBACK}",
            "allow_anonymous true",
            "persistence false",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
        ]
        if os.geteuid() == 0:
            conf.append("user root")  # else it drops to "mosquitto", who cannot write here
        self.conf_path = workdir / "mosquitto.conf"
        self.conf_path.write_text("\n".join(conf) + "\n")
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Start it and return once a TCP connection to its port succeeds."""
        self._proc = subprocess.Popen(
            [self._binary, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C is for the benchmark, which then stops it
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no other thread runs yet
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise BenchFailure(f"mosquitto did not listen on {self.port}: {self._log()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(timeout=0.01)  # notices an early exit while waiting
                raise BenchFailure(f"mosquitto exited with {code}: {self._log()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"
