"""What the history holds after a boot, as JSON: run in the guest by the system test.

Reads the simulation's history database read-only (the daemon may be running) and prints its
integrity, every event's ``seq`` and ``id``, the sessions and UV-C cycles started before this
boot and still open (a power cut must leave none once the daemon has started), and the
calibration file's digest. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from datetime import datetime
from pathlib import Path


def boot_wall() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise SystemExit("no btime in /proc/stat")


def main() -> None:
    state = Path(sys.argv[1] if len(sys.argv) > 1 else "/var/lib/dermaguard/simulation")
    db = state / "dermaguard.db"
    out: dict[str, object] = {"db": str(db), "exists": db.exists()}
    cal = state / "calibration.json"
    out["calibration"] = hashlib.sha256(cal.read_bytes()).hexdigest() if cal.exists() else None
    if db.exists():
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        out["integrity"] = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        out["events"] = [[s, i, t] for s, i, t in conn.execute("SELECT seq, id, type FROM events")]
        booted = boot_wall()
        out["open_sessions_before_boot"] = [
            no
            for no, wall in conn.execute(
                "SELECT session_no, started_wall FROM sessions WHERE status = 'open'"
            )
            if wall < booted
        ]
        open_cycles = []
        for cid, started in conn.execute(
            "SELECT cycle_id, started_at FROM cycles WHERE ended_at IS NULL"
        ):
            if datetime.fromisoformat(started).timestamp() < booted:
                open_cycles.append(cid)
        out["open_cycles_before_boot"] = open_cycles
        out["interrupted_sessions"] = conn.execute(
            "SELECT count(*) FROM sessions WHERE status = 'interrupted'"
        ).fetchone()[0]
        out["interrupted_cycles"] = conn.execute(
            "SELECT count(*) FROM cycles WHERE reason = 'interrupted'"
        ).fetchone()[0]
        conn.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
