"""firmware/provision.sh, run for real into a scratch root (``--root``), twice.

One module-scoped target is provisioned twice with the venv (a real ``pip install`` of this
source tree: 15-25 s for the first run here, about 5 s for the second), a user edits its config
in between, and the tests read what the two runs left. The edge cases (a stale or damaged
block, no boot config, not root) run with ``--no-venv``, a fraction of a second each.

``systemd-sysusers`` and ``systemctl`` (package systemd) are required tools: missing, the tests
fail with the install command. Nothing here is skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "firmware" / "provision.sh"
FRAGMENT = ROOT / "firmware" / "config.txt"
UNIT = ROOT / "systemd" / "dermaguard.service"
WEB_UNIT = ROOT / "systemd" / "dermaguard-web.service"
BROKER_CONF = Path("etc/mosquitto/conf.d/dermaguard.conf")
SYSUSERS = ROOT / "systemd" / "dermaguard.sysusers"
EXAMPLE = ROOT / "src" / "dermaguard" / "data" / "dermaguard.example.yaml"
SPI_DEV = "/dev/spidev0.0"
#: The group number given to spi in a target provisioned as root (any that sysusers leaves alone).
SPI_GID_AS_ROOT = 4242
BEGIN = "# >>> dermaguard >>>"
END = "# <<< dermaguard <<<"

#: A Raspberry Pi OS bookworm /boot/firmware/config.txt (abridged), ending in a model section.
SAMPLE_BOOT = """\
# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host
"""

pytestmark = pytest.mark.subprocess


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(
            f"{tool} was not found: provision.sh needs it; install systemd "
            "(apt-get install -y systemd)",
            pytrace=False,
        )


@pytest.fixture(scope="module", autouse=True)
def _systemd_tools() -> None:
    for tool in ("systemd-sysusers", "systemctl"):
        _require(tool)


def provision(
    target: Path, *args: str, check: bool = True, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``provision.sh --root target args...``; the venv, if any, is made with this Python."""
    env = {**os.environ, "PYTHON": sys.executable, "LC_ALL": "C.UTF-8", "SYSTEMD_PAGER": ""}
    result = subprocess.run(
        [*prefix, str(SCRIPT), "--root", str(target), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def snapshot(target: Path) -> dict[str, tuple[int, str | bytes]]:
    """Every file, link and directory under ``target`` but the venv: mode and content."""
    out: dict[str, tuple[int, str | bytes]] = {}
    venv = target / "opt" / "dermaguard" / "venv"
    for path in sorted(target.rglob("*")):
        if path == venv or venv in path.parents:
            continue
        mode = path.lstat().st_mode
        if path.is_symlink():
            content: str | bytes = str(path.readlink())
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = b""
        out[str(path.relative_to(target))] = (mode, content)
    return out


def blocks(text: str) -> list[str]:
    """The dermaguard blocks of a boot config, markers included."""
    return re.findall(rf"^{re.escape(BEGIN)}\n.*?^{re.escape(END)}$", text, re.M | re.S)


def expected_block() -> str:
    lines = [BEGIN, *FRAGMENT.read_text(encoding="utf-8").splitlines(), END]
    return "\n".join(lines)


def group_line(target: Path, name: str) -> list[str]:
    for line in (target / "etc" / "group").read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"no group {name} in {target}/etc/group")


# --- the real thing: venv, two runs -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Provisioned:
    target: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    after_first: dict[str, tuple[int, str | bytes]]
    after_second: dict[str, tuple[int, str | bytes]]
    user_config: str


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    target = tmp_path_factory.mktemp("target")
    boot = target / "boot" / "firmware"
    boot.mkdir(parents=True)
    (boot / "config.txt").write_text(SAMPLE_BOOT, encoding="utf-8")

    first = provision(target)
    after_first = snapshot(target)
    # The user edits the config between the runs.
    config = target / "etc" / "dermaguard" / "dermaguard.yaml"
    user_config = config.read_text(encoding="utf-8").replace(
        "log_level: info", "log_level: debug  # edited by the user"
    )
    assert user_config != config.read_text(encoding="utf-8")
    config.write_text(user_config, encoding="utf-8")

    second = provision(target)
    return Provisioned(target, first, second, after_first, snapshot(target), user_config)


@pytest.mark.slow
def test_the_unit_is_the_repos_unit(provisioned: Provisioned) -> None:
    installed = provisioned.target / "etc" / "systemd" / "system" / "dermaguard.service"
    assert installed.read_bytes() == UNIT.read_bytes()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o644


@pytest.mark.slow
def test_the_service_is_enabled(provisioned: Provisioned) -> None:
    wants = provisioned.target / "etc/systemd/system/multi-user.target.wants/dermaguard.service"
    assert wants.is_symlink()
    assert str(wants.readlink()) == "/etc/systemd/system/dermaguard.service"
    assert "not started" in provisioned.first.stdout


@pytest.mark.slow
def test_the_web_dashboards_unit_is_installed_and_enabled(provisioned: Provisioned) -> None:
    installed = provisioned.target / "etc" / "systemd" / "system" / "dermaguard-web.service"
    assert installed.read_bytes() == WEB_UNIT.read_bytes()
    wants = provisioned.target / "etc/systemd/system/multi-user.target.wants/dermaguard-web.service"
    assert str(wants.readlink()) == "/etc/systemd/system/dermaguard-web.service"


@pytest.mark.slow
def test_the_first_run_installs_the_example_config_0640_root_dermaguard(
    provisioned: Provisioned,
) -> None:
    mode, content = provisioned.after_first["etc/dermaguard/dermaguard.yaml"]
    assert content == EXAMPLE.read_bytes()
    assert stat.S_IMODE(mode) == 0o640
    config = provisioned.target / "etc" / "dermaguard" / "dermaguard.yaml"
    if os.geteuid() == 0:  # ownership is only settable as root (test_not_root_... covers the rest)
        st = config.stat()
        assert (st.st_uid, st.st_gid) == (0, int(group_line(provisioned.target, "dermaguard")[2]))


@pytest.mark.slow
def test_a_users_edited_config_survives_the_second_run(provisioned: Provisioned) -> None:
    config = provisioned.target / "etc" / "dermaguard" / "dermaguard.yaml"
    assert config.read_text(encoding="utf-8") == provisioned.user_config
    assert "kept      /etc/dermaguard/dermaguard.yaml" in provisioned.second.stdout


@pytest.mark.slow
def test_the_boot_config_keeps_its_lines_and_has_one_block_after_two_runs(
    provisioned: Provisioned,
) -> None:
    text = (provisioned.target / "boot" / "firmware" / "config.txt").read_text(encoding="utf-8")
    assert blocks(text) == [expected_block()]
    # The original file, unchanged and in order, then one blank line, then the block at the end.
    assert text == SAMPLE_BOOT + "\n" + expected_block() + "\n"
    backup = provisioned.target / "boot" / "firmware" / "config.txt.dermaguard-backup"
    assert backup.read_text(encoding="utf-8") == SAMPLE_BOOT


@pytest.mark.slow
def test_systemd_sysusers_made_the_user_in_groups_gpio_and_spi(provisioned: Provisioned) -> None:
    target = provisioned.target
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (target / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
    }
    user = passwd["dermaguard"]
    assert int(user[2]) < 1000, "a system user"
    assert user[3] == group_line(target, "dermaguard")[2]
    assert user[5] == "/var/lib/dermaguard"
    assert user[6].endswith("nologin")
    assert "dermaguard" in group_line(target, "gpio")[3].split(",")
    assert "dermaguard" in group_line(target, "spi")[3].split(",")
    installed = target / "usr" / "lib" / "sysusers.d" / "dermaguard.conf"
    assert installed.read_bytes() == SYSUSERS.read_bytes()


@pytest.mark.slow
def test_spi_is_turned_on_and_its_device_left_for_the_targets_boot(
    provisioned: Provisioned,
) -> None:
    """An image has no /dev/spidev0.0 yet: that is reported, not a failure."""
    text = (provisioned.target / "boot" / "firmware" / "config.txt").read_text(encoding="utf-8")
    [block] = blocks(text)
    assert "dtparam=spi=on" in block.splitlines()
    for run in (provisioned.first, provisioned.second):
        assert f"later     {SPI_DEV} appears when the target boots" in run.stdout
        assert "warning" not in run.stderr


@pytest.mark.slow
def test_the_watchdog_is_handed_to_systemd(provisioned: Provisioned) -> None:
    conf = provisioned.target / "etc/systemd/system.conf.d/dermaguard-watchdog.conf"
    assert conf.read_bytes() == (ROOT / "firmware" / "watchdog.conf").read_bytes()
    assert re.search(r"^RuntimeWatchdogSec=\d+s$", conf.read_text(encoding="utf-8"), re.M)


@pytest.mark.slow
def test_the_venv_runs_dermaguard(provisioned: Provisioned) -> None:
    exe = provisioned.target / "opt" / "dermaguard" / "venv" / "bin" / "dermaguard"
    result = subprocess.run(
        [str(exe), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "calibrate" in result.stdout
    assert "created   venv" in provisioned.first.stdout
    assert "kept      venv" in provisioned.second.stdout


@pytest.mark.slow
def test_the_second_run_changes_nothing_but_what_the_user_edited(
    provisioned: Provisioned,
) -> None:
    before = dict(provisioned.after_first)
    after = dict(provisioned.after_second)
    edited = "etc/dermaguard/dermaguard.yaml"
    assert after.pop(edited)[1] == provisioned.user_config.encode()
    before.pop(edited)
    assert after == before
    assert "unchanged /boot/firmware/config.txt" in provisioned.second.stdout


# --- the edge cases, without the venv ---------------------------------------------------------


def test_a_stale_block_is_replaced_in_place_of_a_second_one(tmp_path: Path) -> None:
    boot = tmp_path / "boot" / "firmware" / "config.txt"
    boot.parent.mkdir(parents=True)
    stale = f"{BEGIN}\ngpio=4=op,dh\n{END}\n"
    before, after = "arm_64bit=1\n\n", "[pi4]\narm_boost=1\n"
    boot.write_text(before + stale + after, encoding="utf-8")

    provision(tmp_path, "--no-venv")
    text = boot.read_text(encoding="utf-8")
    assert blocks(text) == [expected_block()]
    assert "gpio=4=op,dh" not in text
    # Everything outside the old block stays, in order; the new block goes at the end.
    assert text == "arm_64bit=1\n\n[pi4]\narm_boost=1\n\n" + expected_block() + "\n"
    provision(tmp_path, "--no-venv")
    assert boot.read_text(encoding="utf-8") == text


def test_a_damaged_block_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    boot = tmp_path / "boot" / "firmware" / "config.txt"
    boot.parent.mkdir(parents=True)
    damaged = f"arm_64bit=1\n{BEGIN}\ngpio=25=op,dl\n"  # the end marker was deleted
    boot.write_text(damaged, encoding="utf-8")

    result = provision(tmp_path, "--no-venv", check=False)
    assert result.returncode != 0
    assert "fix it by hand" in result.stderr
    assert boot.read_text(encoding="utf-8") == damaged
    assert not (tmp_path / "etc").exists(), "nothing is changed before the checks pass"


def test_without_a_broker_a_local_one_is_offered_not_installed(tmp_path: Path) -> None:
    result = provision(tmp_path, "--no-venv")
    assert "offered   local broker: none is configured; run again with --local-broker" in (
        result.stdout
    )
    assert not (tmp_path / BROKER_CONF).exists()


def test_the_local_broker_listens_on_the_loopback_only_and_stays(tmp_path: Path) -> None:
    first = provision(tmp_path, "--no-venv", "--local-broker")
    conf = (tmp_path / BROKER_CONF).read_text(encoding="utf-8")
    listeners = [line.split() for line in conf.splitlines() if line.startswith("listener")]
    assert listeners == [["listener", "1883", "127.0.0.1"]]
    assert f"installed /{BROKER_CONF}" in first.stdout
    assert "the target needs mosquitto" in first.stdout
    second = provision(tmp_path, "--no-venv")  # installed once: kept without asking again
    assert f"unchanged /{BROKER_CONF}" in second.stdout


def test_a_configured_broker_gets_no_local_one(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "dermaguard" / "dermaguard.yaml"
    config.parent.mkdir(parents=True)
    config.write_text('mqtt:\n  host: "broker.lan"\n', encoding="utf-8")
    result = provision(tmp_path, "--no-venv", "--local-broker")
    assert "skipped   local broker: mqtt.host is broker.lan" in result.stdout
    assert not (tmp_path / BROKER_CONF).exists()


def test_without_a_boot_config_one_is_made_with_the_block_alone(tmp_path: Path) -> None:
    provision(tmp_path, "--no-venv")
    text = (tmp_path / "boot" / "firmware" / "config.txt").read_text(encoding="utf-8")
    assert text == expected_block() + "\n"


def test_not_root_ownership_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    """As root the script is re-run as ``nobody`` (setpriv), on a copy it can read."""
    prefix: tuple[str, ...] = ()
    scratch = Path(tempfile.mkdtemp(prefix="dermaguard-provision-", dir="/tmp"))
    try:
        copy = scratch / "repo"
        for rel in ("firmware", "systemd", "src/dermaguard/data", "README.md"):
            src = ROOT / rel
            dest = copy / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dest)
        target = scratch / "target"
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            assert setpriv, "setpriv is needed to drop root: apt-get install util-linux"
            for path in [scratch, *scratch.rglob("*")]:
                os.chown(path, 65534, 65534, follow_symlinks=False)
            prefix = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
        env = {**os.environ, "HOME": str(scratch), "LC_ALL": "C.UTF-8"}
        result = subprocess.run(
            [*prefix, str(copy / "firmware" / "provision.sh"), "--root", str(target), "--no-venv"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        assert "cannot chown /etc/dermaguard/dermaguard.yaml" in result.stderr
        config = target / "etc" / "dermaguard" / "dermaguard.yaml"
        assert config.read_bytes() == EXAMPLE.read_bytes()
        assert stat.S_IMODE(config.stat().st_mode) == 0o640
        wants = target / "etc/systemd/system/multi-user.target.wants"
        assert (wants / "dermaguard.service").is_symlink()
        assert "dermaguard" in group_line(target, "gpio")[3].split(",")
        assert "dermaguard" in group_line(target, "spi")[3].split(",")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def spi_target(tmp_path: Path, mode: int) -> Path:
    """A target whose group spi exists already (as on Raspberry Pi OS) and owns a stand-in
    /dev/spidev0.0 with ``mode``, owned by this process's user (not the service user).

    As root the group gets a number of its own; otherwise this process's group, which is the
    only one an unprivileged chown can give the file.
    """
    gid = SPI_GID_AS_ROOT if os.geteuid() == 0 else os.getegid()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "group").write_text(f"spi:x:{gid}:\n", encoding="utf-8")
    device = tmp_path / SPI_DEV.lstrip("/")
    device.parent.mkdir()
    device.write_bytes(b"")
    os.chown(device, os.geteuid(), gid)
    device.chmod(mode)
    return device


def test_a_spi_device_of_group_spi_is_open_to_the_service_user(tmp_path: Path) -> None:
    spi_target(tmp_path, 0o660)
    result = provision(tmp_path, "--no-venv")
    assert f"checked   {SPI_DEV}: user dermaguard can open it" in result.stdout
    assert "warning" not in result.stderr
    # The existing group is kept and gains the member: that is what opens the device.
    gid = SPI_GID_AS_ROOT if os.geteuid() == 0 else os.getegid()
    assert group_line(tmp_path, "spi")[2] == str(gid)
    assert "dermaguard" in group_line(tmp_path, "spi")[3].split(",")


def test_a_spi_device_the_service_user_cannot_open_is_a_warning(tmp_path: Path) -> None:
    """Mode 0600 for another owner: the run finishes (exit 0) but says what is wrong."""
    spi_target(tmp_path, 0o600)
    result = provision(tmp_path, "--no-venv")
    assert f"user dermaguard cannot open {SPI_DEV} for reading and writing" in result.stderr
    assert "mode 600" in result.stderr
    assert "group spi, mode 0660" in result.stderr
    assert f"but see the warning about {SPI_DEV} above" in result.stdout.splitlines()[-1]
    assert "checked" not in result.stdout


def test_a_spi_device_open_to_the_group_for_reading_only_is_a_warning(tmp_path: Path) -> None:
    """The daemon writes to the bus (the PD_SCK pulses are MOSI bits): read-only is not enough."""
    spi_target(tmp_path, 0o640)
    result = provision(tmp_path, "--no-venv")
    assert f"user dermaguard cannot open {SPI_DEV}" in result.stderr
    assert "mode 640" in result.stderr


def test_help_and_bad_arguments(tmp_path: Path) -> None:
    shown = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert shown.returncode == 0
    for option in ("--root DIR", "--source PATH", "--no-venv", "--help"):
        assert option in shown.stdout
    assert SPI_DEV in shown.stdout and "reboot" in shown.stdout
    bad = provision(tmp_path, "--frobnicate", check=False)
    assert bad.returncode != 0
    assert "unknown argument: --frobnicate" in bad.stderr
    missing = provision(tmp_path, "--source", str(tmp_path / "nope"), check=False)
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr


def test_offline_needs_a_wheelhouse_and_says_which(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    offline.mkdir()
    refused = provision(tmp_path / "root", "--offline", str(offline), check=False)
    assert refused.returncode != 0
    assert f"--offline {offline} has no wheels/ directory" in refused.stderr
    gone = provision(tmp_path / "root", "--offline", str(tmp_path / "nope"), check=False)
    assert gone.returncode != 0
    assert "is not a directory" in gone.stderr
    shown = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert "--offline DIR" in shown.stdout
