"""Run ``dermaguard`` as ``python -m dermaguard`` would, and keep a map of its threads.

``bench/daemon.py`` starts the daemon through this file so that it can tell the emulator's
threads from the daemon's own in ``/proc/<pid>/task``: Python's thread names never reach the
kernel, so the map (native thread id -> Python name) is rewritten every half second to the file
named by ``DG_THREAD_MAP``, as JSON: ``threads`` (the map), ``at`` (``time.monotonic()`` when
written, the same clock in every process), and what the simulated hardware counted by then:
``conversions_read`` (reads the emulated chip clocked out), ``transfers`` and
``fast_transfers`` (SPI transfers, and of those the ones a frames bus answered at once), and
``bus_cpu_ns`` (the CPU a frames bus spent answering, inside the reading thread). The
hardware is found by noting every ``SimHardware`` the daemon builds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

from dermaguard.sim.hardware import SimHardware
from dermaguard.ui.cli import main

#: The simulated hardware the daemon built (one per run).
BUILT: list[SimHardware] = []


def _counts() -> dict[str, int]:
    out = {"conversions_read": 0, "transfers": 0, "fast_transfers": 0, "bus_cpu_ns": 0}
    for sim in list(BUILT):
        out["conversions_read"] += sim.chip.reads_completed
        if sim.bus is not None:
            out["transfers"] += sim.bus.transfers
            out["fast_transfers"] += getattr(sim.bus, "fast_transfers", 0)
            out["bus_cpu_ns"] += getattr(sim.bus, "cpu_ns", 0)
    return out


def _keep_map(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    while True:
        names = {str(t.native_id): t.name for t in threading.enumerate()}
        snapshot = {"threads": names, "at": time.monotonic(), **_counts()}
        tmp.write_text(json.dumps(snapshot), encoding="utf-8")
        tmp.replace(path)
        time.sleep(0.5)


_build = SimHardware.__init__


def _noted(sim: SimHardware, *args: Any, **kwargs: Any) -> None:
    _build(sim, *args, **kwargs)
    BUILT.append(sim)


if __name__ == "__main__":
    threading.Thread(
        target=_keep_map, args=(Path(os.environ["DG_THREAD_MAP"]),), name="bench-map", daemon=True
    ).start()
    with mock.patch.object(SimHardware, "__init__", _noted):
        sys.exit(main(sys.argv[1:]))
