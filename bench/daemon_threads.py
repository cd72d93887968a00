"""Run ``dermaguard`` as ``python -m dermaguard`` would, and keep a map of its threads.

``bench/daemon.py`` starts the daemon through this file so that it can tell the emulator's
threads from the daemon's own in ``/proc/<pid>/task``: Python's thread names never reach the
kernel, so the map (native thread id -> Python name) is rewritten every half second to the file
named by ``DG_THREAD_MAP``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from dermaguard.ui.cli import main


def _keep_map(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    while True:
        names = {str(t.native_id): t.name for t in threading.enumerate()}
        tmp.write_text(json.dumps(names), encoding="utf-8")
        tmp.replace(path)
        time.sleep(0.5)


if __name__ == "__main__":
    threading.Thread(
        target=_keep_map, args=(Path(os.environ["DG_THREAD_MAP"]),), name="bench-map", daemon=True
    ).start()
    sys.exit(main(sys.argv[1:]))
