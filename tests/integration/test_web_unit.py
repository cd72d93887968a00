"""systemd/dermaguard-web.service: systemd accepts it and its sandbox is as tight as the
daemon's (exposure <= 2.5), with no device access at all."""

from __future__ import annotations

import re
from pathlib import Path

from test_systemd_unit import MAX_EXPOSURE, directives, one, run, tool, verify_in_scratch_root

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "dermaguard-web.service"


def test_systemd_verify_accepts_the_web_unit(tmp_path: Path) -> None:
    rc, messages = verify_in_scratch_root(UNIT.read_text(), tmp_path)
    assert rc == 0 and messages == [], "\n".join(messages)


def test_the_web_units_sandbox_exposure_is_low() -> None:
    proc = run(tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(UNIT))
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert found, proc.stdout
    weak = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("✗"))
    assert float(found.group(1)) <= MAX_EXPOSURE, weak


def test_the_web_unit_runs_the_dashboard_apart_from_the_hardware() -> None:
    s = directives(UNIT.read_text())
    assert one(s, "Service.ExecStart") == (
        "/opt/dermaguard/venv/bin/dermaguard web --config /etc/dermaguard/dermaguard.yaml"
    )
    assert one(s, "Service.User") == "dermaguard"
    assert one(s, "Service.PrivateDevices") == "yes"  # no GPIO, no SPI
    assert "Service.SupplementaryGroups" not in s
    assert int(one(s, "Service.CPUWeight")) < 100  # yields to the daemon (default weight 100)
