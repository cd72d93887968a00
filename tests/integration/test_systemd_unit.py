"""systemd/dermaguard.service: systemd accepts it, its sandbox stays tight, it says what it must.

``systemd-analyze verify`` checks that the unit's executable exists; on a test machine
/opt/dermaguard is not installed. Rather than editing the unit, it is verified byte for byte
inside a scratch root (``--root``) that holds this machine's stock units, the unit, and a stub
at the ExecStart path. verify exits 0 even when it ignores an unknown or invalid setting, so
anything it prints is a failure; a deliberately broken copy proves that check can fail.

``systemd-analyze`` (package systemd) is a required tool here: missing, the tests fail.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "dermaguard.service"
SYSUSERS = ROOT / "systemd" / "dermaguard.sysusers"
MAX_EXPOSURE = 2.5
#: Where distributions keep the stock units (sysinit.target, network-online.target, ...).
STOCK_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
MISSING = "systemd-analyze was not found: install systemd (apt install systemd)"
ENV = {**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"}


def tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/bin", "/bin") if (p := Path(d) / name).is_file()), None
    )
    if found is None:
        pytest.fail(MISSING.replace("systemd-analyze", name), pytrace=False)
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=120, check=False)


def directives(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> its values in order (systemd allows a key several times)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line continuations are not expected: {raw!r}"
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {raw!r}"
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, found {values}"
    return values[0]


def seconds(value: str) -> float:
    """A systemd time span as used here ("10s", "45s", "2min", "500ms", "10")."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "min": 60.0, "m": 60.0}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, f"not a time span: {value!r}"
    for number, unit in parts:
        assert unit in units, f"unexpected time unit in {value!r}"
        total += float(number) * units[unit]
    return total


def verify_in_scratch_root(unit_text: str, root: Path) -> tuple[int, list[str]]:
    """Run ``systemd-analyze verify`` on ``unit_text`` installed in ``root``; (rc, messages)."""
    analyze = tool("systemd-analyze")
    stock = next((d for d in STOCK_UNIT_DIRS if (d / "sysinit.target").is_file()), None)
    assert stock is not None, f"no stock systemd units in {STOCK_UNIT_DIRS}"
    shutil.copytree(stock, root / "usr/lib/systemd/system", symlinks=True)
    installed = root / "etc/systemd/system/dermaguard.service"
    installed.parent.mkdir(parents=True)
    installed.write_text(unit_text)
    exec_start = one(directives(unit_text), "Service.ExecStart")
    binary = exec_start.split()[0].lstrip("-@:+!")
    stub = root / binary.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    proc = run(analyze, "verify", f"--root={root}", "/etc/systemd/system/dermaguard.service")
    messages = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return proc.returncode, messages


def test_systemd_verify_accepts_the_unit_unchanged(tmp_path: Path) -> None:
    text = UNIT.read_text()
    rc, messages = verify_in_scratch_root(text, tmp_path)
    assert rc == 0, "\n".join(messages)
    assert messages == [], "systemd-analyze verify complained:\n" + "\n".join(messages)
    installed = tmp_path / "etc/systemd/system/dermaguard.service"
    assert installed.read_bytes() == UNIT.read_bytes()


def test_verify_reports_a_broken_setting(tmp_path: Path) -> None:
    """The check above can fail: an unknown key and an invalid value are reported."""
    broken = UNIT.read_text().replace(
        "[Service]\n", "[Service]\nFooBar=1\nDeviceAllow=char-gpiochip rwx\n", 1
    )
    rc, messages = verify_in_scratch_root(broken, tmp_path)
    text = "\n".join(messages)
    assert rc == 0  # systemd only warns: hence the check on its messages
    assert "Unknown key" in text and "FooBar" in text, text
    assert "rwx" in text, text


def test_sandbox_exposure_is_low() -> None:
    analyze = tool("systemd-analyze")
    proc = run(analyze, "security", "--offline=true", "--no-pager", str(UNIT))
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert found, f"no overall exposure in:\n{proc.stdout}\n{proc.stderr}"
    exposure = float(found.group(1))
    weak = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("✗"))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}; open items:\n{weak}"


def test_unit_says_what_the_design_requires() -> None:
    s = directives(UNIT.read_text())
    assert one(s, "Service.Type") == "notify"
    assert one(s, "Service.NotifyAccess") == "main"
    assert 0 < seconds(one(s, "Service.WatchdogSec")) <= 60
    assert one(s, "Service.Restart") == "on-failure"
    assert one(s, "Service.User") == "dermaguard"
    assert one(s, "Service.Group") == "dermaguard"
    groups = one(s, "Service.SupplementaryGroups").split()
    assert "gpio" in groups
    # /dev/spidev0.* belongs to group spi on Raspberry Pi OS: the HX711's bus.
    assert "spi" in groups
    assert one(s, "Service.StateDirectory") == "dermaguard"
    assert one(s, "Service.ConfigurationDirectory") == "dermaguard"
    assert one(s, "Service.ExecStart") == (
        "/opt/dermaguard/venv/bin/dermaguard run --config /etc/dermaguard/dermaguard.yaml"
    )
    # Whatever stopped the daemon (SIGKILL included), UV-C and the buzzer are driven off after.
    assert one(s, "Service.ExecStopPost") == (
        "-/opt/dermaguard/venv/bin/dermaguard outputs-off --config /etc/dermaguard/dermaguard.yaml"
    )
    assert one(s, "Service.KillSignal") == "SIGTERM"
    # The daemon's own shutdown is bounded (MQTT flush 3 s, store writer 10 s, threads, ...):
    # systemd must not SIGKILL it in the middle.
    assert seconds(one(s, "Service.TimeoutStopSec")) >= 30
    # The GPIO and SPI devices stay reachable under the device policy, read and write.
    allowed = dict(v.split() for v in s.get("Service.DeviceAllow", []))
    assert allowed.get("char-gpiochip") == "rw"
    assert allowed.get("char-spi") == "rw"
    assert one(s, "Service.DevicePolicy") == "closed"
    assert one(s, "Service.PrivateDevices") == "no"


def proc_devices_pattern_matches(pattern: str, name: str) -> bool:
    """A ``char-<glob>`` DeviceAllow entry matches a /proc/devices name as fnmatch does."""
    assert pattern.startswith("char-"), pattern
    return fnmatch.fnmatchcase(name, pattern.removeprefix("char-"))


def test_the_spi_device_group_is_the_name_spidev_registers() -> None:
    """spidev registers its major 153 as "spi" in /proc/devices (drivers/spi/spidev.c), not
    "spidev": an entry that names the node instead would leave /dev/spidev0.0 denied."""
    s = directives(UNIT.read_text())
    patterns = [v.split()[0] for v in s["Service.DeviceAllow"]]
    spi = [p for p in patterns if proc_devices_pattern_matches(p, "spi")]
    assert spi == ["char-spi"]
    # Nothing else on a Pi's /proc/devices list is let in by that entry.
    for other in ("spidev", "ttyS", "mem", "i2c", "gpiochip", "bcm2835-gpiomem", "rpi-gpiomem"):
        assert not proc_devices_pattern_matches("char-spi", other), other


def entries(path: Path) -> dict[str, list[str]]:
    """/etc/passwd or /etc/group: name -> its colon-separated fields."""
    return {f[0]: f for f in (line.split(":") for line in path.read_text().splitlines() if line)}


def test_sysusers_creates_the_user_in_groups_gpio_and_spi(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    proc = subprocess.run(
        [sysusers, f"--root={tmp_path}", "-"],
        input=SYSUSERS.read_text(),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if "ignoring" in line], proc.stderr
    passwd = entries(tmp_path / "etc/passwd")
    groups = entries(tmp_path / "etc/group")
    assert "dermaguard" in passwd and "dermaguard" in groups and "gpio" in groups
    assert passwd["dermaguard"][3] == groups["dermaguard"][2]  # primary group dermaguard
    assert passwd["dermaguard"][6].endswith("nologin")
    assert "dermaguard" in groups["gpio"][3].split(",")
    assert "dermaguard" in groups["spi"][3].split(",")
