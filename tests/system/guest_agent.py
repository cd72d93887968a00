"""The system test's control channel inside the guest: runs the host's commands as root.

Installed only in the test image (``/usr/local/lib/dermaguard-test/guest_agent.py``, started by
``dermaguard-test-agent.service``); a provisioned Pi never has it. It reads one JSON request per
line from the virtio-serial port the host's QEMU offers and answers one JSON line each:

    {"id": 7, "sh": "systemctl is-active dermaguard", "timeout": 30}
    {"id": 7, "rc": 0, "out": "active\n", "err": "", "mono": 12.5, "wall": 1765000000.0}

``mono`` and ``wall`` are the guest's CLOCK_MONOTONIC and CLOCK_REALTIME when the command
ended, so the host can time things on the guest's own clock (under emulation the guest's time
runs at its own pace). Standard library only: it runs on the image's python3 before provisioning.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

PORT = Path("/dev/virtio-ports/org.dermaguard.agent")


def handle(request: dict[str, object]) -> dict[str, object]:
    """Run one request; never raises, so one bad request cannot end the channel."""
    reply: dict[str, object] = {"id": request.get("id")}
    timeout = float(request.get("timeout", 120))  # type: ignore[arg-type]
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", str(request["sh"])],
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        reply.update(
            rc=done.returncode,
            out=done.stdout.decode(errors="replace"),
            err=done.stderr.decode(errors="replace"),
        )
    except subprocess.TimeoutExpired:
        reply.update(rc=124, out="", err=f"timed out after {timeout:g} s")
    except Exception as exc:  # the channel must survive anything a request does
        reply.update(rc=125, out="", err=f"{type(exc).__name__}: {exc}")
    reply.update(mono=time.clock_gettime(time.CLOCK_MONOTONIC), wall=time.time())
    return reply


def answer(fd: int, lock: threading.Lock, request: dict[str, object]) -> None:
    data = (json.dumps(handle(request)) + "\n").encode()
    with lock:
        while data:
            data = data[os.write(fd, data) :]


def main() -> None:
    while not PORT.exists():
        time.sleep(0.2)
    fd = os.open(PORT, os.O_RDWR)
    lock = threading.Lock()
    buffer = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:  # the host is not connected: virtio-serial reads 0; wait for it
            time.sleep(0.2)
            continue
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                continue
            # Each request in its own thread: the host may ask while a long one runs.
            threading.Thread(target=answer, args=(fd, lock, request), daemon=True).start()


if __name__ == "__main__":
    main()
