"""dermaguard's system test: a real Debian 12 with systemd as PID 1, under QEMU.

Builds or reuses the image (image.py), provisions it with ``firmware/provision.sh --offline``
from the checkout, runs the real units on emulated hardware (seam.py), then does what a user
and the world do to the device: restarts, a hung and a crashed daemon, the dashboard from
outside, the CLI as a user, power cuts at random moments. ``--disk-cache volatile`` serves the
root disk through a write-back cache that a cut empties (nbd_cache.py), as a card's volatile
cache loses what the guest never flushed. Prints one ``name: value`` line per figure and exits
non-zero when a check fails. ``tests/system/run --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import image as image_mod  # noqa: E402
import image_arm64  # noqa: E402
import seam  # noqa: E402
from mqtt_watch import Received, Watcher  # noqa: E402
from nbd_cache import NbdServer, WriteBackDisk  # noqa: E402
from vm import Guest, GuestError  # noqa: E402

from dermaguard.core.events import EventType  # noqa: E402

REPO = HERE.parents[1]
PAYLOAD = "/mnt/payload"
# As README.md says to run the CLI next to the service: its state directory named.
DG = f"env STATE_DIRECTORY=/var/lib/dermaguard {seam.VENV_BIN}/dermaguard"


@dataclass
class Results:
    figures: dict[str, object] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def figure(self, name: str, value: object) -> None:
        self.figures[name] = value
        print(f"{name}: {value}", flush=True)

    def check(self, ok: bool, what: str) -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failures.append(what)
        return ok


def step(text: str) -> None:
    print(f"== {text}", flush=True)


# -- the payload disk -------------------------------------------------------------------------


def make_payload(dest: Path, image: image_mod.Image) -> None:
    """The checkout as it is (tracked files of the working tree), the offline set, the seam."""
    src = dest / "src"
    src.mkdir(parents=True)
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = REPO / os.fsdecode(name)
        if path.is_file():
            target = src / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    shutil.copytree(image.offline, dest / "offline")
    if (image.root / "lgpio").is_dir():  # the arm64 image's: see check_lgpio_wheel
        shutil.copytree(image.root / "lgpio", dest / "lgpio")
    test = dest / "test"
    test.mkdir()
    (test / "dermaguard.conf").write_text(seam.DAEMON_DROPIN)
    (test / "dermaguard-web.conf").write_text(seam.WEB_DROPIN)
    (test / "broker.conf").write_text(seam.BROKER_LISTENER)
    for kind in seam.SCENARIO_KINDS:
        (test / f"scenario-{kind}.yaml").write_text(seam.scenario(kind))
    shutil.copy(HERE / "guest_check.py", test / "guest_check.py")


# -- guest helpers ----------------------------------------------------------------------------


def slowness(guest: Guest) -> float:
    """How much longer than amd64's the long waits are: an arm64 guest's every instruction is
    translated (TCG), on a host that also runs other work."""
    return 1.0 if guest.arch == "amd64" else 2.0


def boot(
    guest: Guest, res: Results, timeout: float = 600.0, on_launch: Callable[[], None] | None = None
) -> float:
    """Start the guest and wait for its agent; returns the host's launch time."""
    launched = guest.start()
    if on_launch is not None:
        on_launch()
    guest.wait_agent(timeout * slowness(guest))
    guest.sh(f"mountpoint -q {PAYLOAD} || (mkdir -p {PAYLOAD} && mount -o ro /dev/vdb {PAYLOAD})")
    return launched


def choose_accel(guest: Guest, wanted: str) -> str:
    """KVM when it works here (the kernel prints within a timeout), else TCG.

    The answer is kept per host kernel in the cache: a host whose /dev/kvm cannot run a stock
    Debian kernel (a nested host's kvm-pvm, for one) costs the probe once.
    """
    if guest.arch != "amd64":  # an emulated arm64 on an x86 host: KVM cannot run it
        if wanted == "kvm":
            sys.exit(f"--accel kvm: KVM cannot run {guest.arch} here; TCG only")
        return "tcg"
    if wanted != "auto":
        return wanted
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    known = image_mod.cache_root() / f"accel-{os.uname().release}"
    if known.exists():
        return known.read_text().strip()
    guest.accel, guest.quiet = "kvm", False
    try:
        guest.start()
    except GuestError as exc:  # e.g. a nested host's KVM that cannot set this CPU's MSRs
        printed = False
        print(f"  KVM: {str(exc).strip().splitlines()[-1]}; using TCG", flush=True)
    else:
        printed = guest.kernel_printed(float(os.environ.get("DERMAGUARD_KVM_PROBE_S", "20")))
        if not printed:
            print("  KVM: the kernel printed nothing; using TCG", flush=True)
    guest.cut_power()
    guest.quiet = True
    accel = "kvm" if printed else "tcg"
    known.write_text(accel + "\n")
    return accel


def unit_show(guest: Guest, unit: str) -> dict[str, str]:
    out = guest.sh(
        f"systemctl show {unit} -p MainPID,ActiveState,SubState,NRestarts,InvocationID,"
        "ActiveEnterTimestampMonotonic,ExecMainStartTimestampMonotonic"
    ).out
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_active(guest: Guest, unit: str, timeout: float, *, after_us: int = 0) -> dict[str, str]:
    """Wait until ``unit`` is active (for Type=notify: READY=1 arrived) after ``after_us``."""
    deadline = time.monotonic() + timeout
    props: dict[str, str] = {}
    while time.monotonic() < deadline:
        props = unit_show(guest, unit)
        entered = int(props.get("ActiveEnterTimestampMonotonic", "0") or 0)
        if props.get("ActiveState") == "active" and entered > after_us:
            return props
        time.sleep(0.5)
    raise GuestError(f"{unit} not active within {timeout:g} s: {props}")


def guest_check(guest: Guest) -> dict[str, Any]:
    reply = guest.sh(f"python3 {PAYLOAD}/test/guest_check.py {seam.STATE}", check=True)
    return dict(json.loads(reply.out))


# -- 2. provisioning --------------------------------------------------------------------------


def upgrade_package(guest: Guest, res: Results) -> None:
    """The cached disk holds the package of the run that provisioned it: install this
    checkout's over it, offline and as provisioning's step 2 does (a wheel built from a copy,
    forced over the old one), so a quick run tests the code it was started from. An upgrade
    keeps the history, which the new code migrates when it opens it."""
    pip = f"{seam.VENV_BIN}/python -m pip --disable-pip-version-check --no-input -q"
    wheels = f"{PAYLOAD}/offline/wheels"
    reply = guest.sh(
        "set -e; stage=$(mktemp -d); cp -r /mnt/payload/src $stage/src; "
        f"{pip} wheel --no-deps --no-index --find-links {wheels} --wheel-dir $stage/wheel "
        "$stage/src; "
        f"{pip} install --no-index --force-reinstall --no-deps $stage/wheel/dermaguard-*.whl; "
        "rm -rf $stage 2>&1",
        timeout=1200,
    )
    if reply.rc != 0:
        print(reply.out[-2000:], flush=True)
    res.check(reply.rc == 0, "this checkout's dermaguard installed over the cached one")


def install_seam(guest: Guest) -> None:
    guest.sh(
        "set -e; "
        "install -D -m 0644 /mnt/payload/test/dermaguard.conf "
        "/etc/systemd/system/dermaguard.service.d/system-test.conf; "
        "install -D -m 0644 /mnt/payload/test/dermaguard-web.conf "
        "/etc/systemd/system/dermaguard-web.service.d/system-test.conf; "
        "install -D -m 0644 /mnt/payload/test/broker.conf /etc/mosquitto/conf.d/system-test.conf; "
        f"install -d {SCENARIO_DIR}; "
        f"install -m 0644 /mnt/payload/test/scenario-*.yaml {SCENARIO_DIR}/; "
        "systemctl daemon-reload",
        check=True,
    )
    use_scenario(guest, "rolling")


SCENARIO_DIR = str(Path(seam.SCENARIO_PATH).parent)


def use_scenario(guest: Guest, kind: str) -> None:
    """The scenario the daemon plays from its next start (on disk before any power cut)."""
    guest.sh(f"ln -sfn scenario-{kind}.yaml {seam.SCENARIO_PATH} && sync", check=True)


def provision(guest: Guest, res: Results, label: str) -> str:
    started = time.monotonic()
    reply = guest.sh(
        f"{PAYLOAD}/src/firmware/provision.sh --offline {PAYLOAD}/offline --local-broker 2>&1",
        timeout=1800 * slowness(guest),
    )
    took = time.monotonic() - started
    print("\n".join("    " + line for line in reply.out.splitlines()), flush=True)
    res.check(reply.rc == 0, f"provision.sh ({label}) exits 0 [{took:.0f} s]")
    return reply.out


def calibrate(guest: Guest, res: Results) -> None:
    user = "runuser -u dermaguard --"
    tare = guest.sh(f"{user} {DG} calibrate --simulate --tare --config {seam.CONFIG} 2>&1")
    ref = guest.sh(
        f"{user} {DG} calibrate --simulate --reference 200g --sim-load 200g "
        f"--config {seam.CONFIG} 2>&1"
    )
    res.check(tare.rc == 0 and ref.rc == 0, "calibration as the service user (tare, 200 g)")
    if tare.rc or ref.rc:
        print(tare.out, ref.out)


def first_provisioning(guest: Guest, res: Results) -> None:
    install_seam(guest)
    first = provision(guest, res, "first run")
    res.check("python3-lgpio" in first, "provision.sh says what it did about python3-lgpio")
    guest.sh("systemctl stop dermaguard", timeout=120)  # calibrate with the service stopped
    calibrate(guest, res)
    guest.sh("systemctl start dermaguard", timeout=600)
    wait_active(guest, "dermaguard", 600)
    res.check(
        guest.sh("systemctl is-active mosquitto").out.strip() == "active",
        "the local broker provisioning installed is running",
    )


def check_lgpio_wheel(guest: Guest, res: Results) -> None:
    """On arm64: PyPI's lgpio wheel (what Raspberry Pi OS packages as python3-lgpio, which
    plain Debian lacks) installs for the service venv's Python and its C part loads. Into a
    directory of its own: provisioning does not install it, and the venv stays as it made it."""
    probe = "/tmp/lgpio-probe"
    reply = guest.sh(
        f"set -e; rm -rf {probe}; {seam.VENV_BIN}/python -m pip --disable-pip-version-check "
        f"-q install --no-index --no-deps --target {probe} {PAYLOAD}/lgpio/lgpio-*.whl; "
        f"PYTHONPATH={probe} {seam.VENV_BIN}/python -c "
        "'import lgpio, platform; print(platform.machine(), lgpio.__file__)' 2>&1",
        timeout=600,
    )
    print("    " + reply.out.strip().replace("\n", "\n    "), flush=True)
    res.check(
        reply.rc == 0 and "aarch64" in reply.out,
        "lgpio's aarch64 wheel installs for the venv's Python and loads (not provisioned)",
    )
    guest.sh(f"rm -rf {probe}")


def second_provisioning(guest: Guest, res: Results) -> None:
    """Again, over a device with history and a calibration: both must stay."""
    wait_active(guest, "dermaguard", 600)
    guest.sh("systemctl stop dermaguard", timeout=120)  # a fixed history to compare
    before = guest_check(guest)
    second = provision(guest, res, "again")
    res.check("kept" in second and "unchanged" in second, "the second run keeps what exists")
    wait_active(guest, "dermaguard", 600)
    after = guest_check(guest)
    res.check(
        before.get("calibration") is not None
        and after.get("calibration") == before.get("calibration"),
        "provisioning again kept the calibration",
    )
    kept = {tuple(e) for e in before.get("events") or []}
    now = {tuple(e) for e in after.get("events") or []}
    res.check(
        bool(kept) and kept <= now, f"provisioning again kept the history ({len(kept)} events)"
    )


def save_snapshot(disk: Path, snapshot: Path) -> None:
    """The freshly provisioned disk, for ``--quick`` runs to start from (an upgrade)."""
    partial = snapshot.with_suffix(".partial")
    subprocess.run(["cp", "--sparse=always", str(disk), str(partial)], check=True)
    partial.rename(snapshot)


def ready_at(guest: Guest, res: Results, launched: float) -> None:
    """READY=1 of the daemon the boot started: guest seconds since the kernel started."""
    ready = wait_active(guest, "dermaguard", 600)
    res.figure("boot_to_ready_s", round(int(ready["ActiveEnterTimestampMonotonic"]) / 1e6, 1))
    res.figure("boot_to_ready_host_s", round(time.monotonic() - launched, 1))


# -- 3. the units -----------------------------------------------------------------------------


def measure_watchdog(guest: Guest, res: Results) -> None:
    before = wait_active(guest, "dermaguard", 300)
    with stop_path(guest, res, "watchdog", "the watchdog's kill", before):
        stop = guest.sh(f"kill -STOP {before['MainPID']}", check=True)
        after = wait_active(guest, "dermaguard", 300, after_us=int(stop.mono * 1e6))
    took = int(after["ActiveEnterTimestampMonotonic"]) / 1e6 - stop.mono
    res.check(after["MainPID"] != before["MainPID"], "SIGSTOP: the watchdog replaced the daemon")
    res.figure("watchdog_restart_s", round(took, 1))
    exited = main_exits(guest, after_s=stop.mono)
    if exited:
        res.figure("watchdog_kill_s", round(exited[0] - stop.mono, 1))
    journal = guest.sh("journalctl -b -u dermaguard --no-pager -o cat | grep -ci watchdog").out
    res.check(int(journal.strip() or 0) > 0, "the journal says the watchdog fired")


def main_exits(guest: Guest, after_s: float) -> list[float]:
    """When (guest monotonic s) systemd saw the daemon's main process exit, after ``after_s``."""
    out = guest.sh(
        "journalctl -b _PID=1 -o short-monotonic --no-pager "
        "| grep 'dermaguard.service: Main process exited'"
    ).out
    times = [float(line[1 : line.index("]")]) for line in out.splitlines() if line.startswith("[")]
    return [t for t in times if t > after_s]


def measure_crash(guest: Guest, res: Results) -> None:
    measure_restart(guest, res, "SEGV", "crash", what="a crash (SIGSEGV)", figure="crash_restart_s")


def measure_sigkill(guest: Guest, res: Results) -> None:
    """SIGKILL, as the OOM killer sends it: nothing of the daemon's own runs at its end."""
    measure_restart(guest, res, "KILL", "sigkill", what="a SIGKILL", figure="sigkill_restart_s")


def measure_restart(
    guest: Guest, res: Results, signal: str, name: str, *, what: str, figure: str
) -> None:
    """Send the daemon ``SIG<signal>``: systemd runs the stop path and starts it again."""
    before = wait_active(guest, "dermaguard", 300)
    with stop_path(guest, res, name, what, before):
        sent = guest.sh(f"kill -{signal} {before['MainPID']}", check=True)
        after = wait_active(guest, "dermaguard", 300, after_us=int(sent.mono * 1e6))
    took = int(after["ActiveEnterTimestampMonotonic"]) / 1e6 - sent.mono
    res.check(after["MainPID"] != before["MainPID"], f"SIG{signal}: systemd restarted the daemon")
    res.figure(figure, round(took, 1))


# -- 3b. the stop path after a kill (issue 22, item 2) ---------------------------------------

#: The unit's ExecStopPost= in the VM: the command runs, loads the config and finds no GPIO
#: backend (no Raspberry Pi here), says so and exits 1; the unit's "-" keeps that from failing
#: the stop. Any other failure (a traceback, a sandbox denial, a config it cannot read) is one.
NO_GPIO_HERE = "There are no outputs to switch off here."


@dataclass
class StopPost:
    """What the journal holds about the end of one invocation of the daemon's unit."""

    main_exit: str = ""  # PID 1: "Main process exited, code=..., status=..."
    main_exit_s: float | None = None  # guest monotonic
    ran: bool = False  # PID 1 recorded the exit of that invocation's ExecStopPost= process
    status: str = ""  # its EXIT_CODE/EXIT_STATUS, e.g. "exited/1"
    done_s: float | None = None  # guest monotonic, when it exited
    printed: list[str] = field(default_factory=list)  # what it wrote (its own journal lines)

    @property
    def after_exit_s(self) -> float | None:
        """Main process exit to ExecStopPost='s exit: how long the kill left the outputs."""
        if self.main_exit_s is None or self.done_s is None:
            return None
        return self.done_s - self.main_exit_s


def _text(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key, "")
    if isinstance(value, list):  # journalctl -o json gives non-UTF-8 fields as byte lists
        return bytes(value).decode(errors="replace")
    return str(value)


def read_stop_post(entries: list[dict[str, Any]], invocation: str, main_pid: str) -> StopPost:
    """The stop path of invocation ``invocation`` (main process ``main_pid``), from journal
    entries (``journalctl -o json``) of the unit.

    PID 1 logs the exit of an ``ExecStopPost=-`` command only at debug level (its failure is
    ignored, so it counts as a success), with ``COMMAND=ExecStopPost``, the exit code and status
    and the unit's ``INVOCATION_ID``; the command's own output is the unit's (its stdout and
    stderr stream), with the invocation in ``_SYSTEMD_INVOCATION_ID`` and its own ``_PID``. At
    debug level the forked child logs its sandbox set-up under that PID as well, before it
    executes the command: not the command's words.
    """
    seen = StopPost()
    for entry in entries:
        pid, message = _text(entry, "_PID"), _text(entry, "MESSAGE")
        mono = int(_text(entry, "__MONOTONIC_TIMESTAMP") or 0) / 1e6
        if pid == "1" and _text(entry, "INVOCATION_ID") == invocation:
            if "Main process exited" in message and not seen.main_exit:
                seen.main_exit, seen.main_exit_s = message.split(": ", 1)[-1], mono
            command = _text(entry, "COMMAND")
            stop_post = command == "ExecStopPost" or (
                not command and "Control process exited" in message
            )
            if stop_post and "EXIT_CODE" in entry:
                seen.ran, seen.done_s = True, mono
                seen.status = f"{_text(entry, 'EXIT_CODE')}/{_text(entry, 'EXIT_STATUS')}"
        elif (
            pid not in ("1", main_pid)
            and _text(entry, "_TRANSPORT") == "stdout"  # not PID 1's child before its exec
            and _text(entry, "_SYSTEMD_INVOCATION_ID") == invocation
            and (seen.main_exit_s is None or mono >= seen.main_exit_s)
        ):
            seen.printed.append(message)
    return seen


def journal_cursor(guest: Guest) -> str:
    """The journal's last entry now, to read the unit's entries after it."""
    out = guest.sh("journalctl -b -n 1 --show-cursor --no-pager -o cat").out
    return next(
        (line[len("-- cursor: ") :] for line in out.splitlines() if line.startswith("-- cursor: ")),
        "",
    )


@contextmanager
def stop_path(
    guest: Guest, res: Results, name: str, what: str, before: dict[str, str]
) -> Iterator[None]:
    """Around a step that ends the daemon: afterwards, check from the journal that the unit's
    ``ExecStopPost=`` (``dermaguard outputs-off``) ran for the invocation that was ended, and
    record how long after the main process's end it was done (``stop_post_after_<name>_s``).

    PID 1 logs at debug level during the step (``systemctl log-level``), so that it records the
    command's exit; that adds log lines and changes nothing the unit does.
    """
    level = guest.sh("systemctl log-level").out.strip() or "info"
    guest.sh("systemctl log-level debug", check=True)
    cursor = journal_cursor(guest)
    try:
        yield
    finally:
        with suppress(GuestError):  # the step's own failure is the one to report
            guest.sh(f"systemctl log-level {shlex.quote(level)}")
    after = f"--after-cursor={shlex.quote(cursor)}" if cursor else ""
    out = guest.sh(f"journalctl -b -u dermaguard -o json --no-pager {after}").out
    entries: list[dict[str, Any]] = []
    for line in out.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    invocation = before.get("InvocationID", "")
    seen = read_stop_post(entries, invocation, before["MainPID"])
    expected = seen.status == "exited/0" or (
        seen.status == "exited/1" and any(NO_GPIO_HERE in line for line in seen.printed)
    )
    res.check(
        bool(invocation) and seen.ran and expected,
        f"after {what} ({seen.main_exit or 'its end not seen'}): ExecStopPost= ran for that "
        f"invocation, {seen.status or 'no exit recorded'}; outputs-off said: "
        f"{' / '.join(seen.printed) or 'nothing'}",
    )
    took = seen.after_exit_s
    res.figure(f"stop_post_after_{name}_s", round(took, 1) if took is not None else "not run")


def check_gpio_kernel(guest: Guest, res: Results) -> None:
    """What this kernel offers for the stop path on real lines: the Raspberry Pi pin
    controller's persistence switch (``dtparam=strict_gpiod``), gpio-sim and gpio-mockup.
    On x86 there is no pinctrl_bcm2835: that part is for a Pi (docs/RELIABILITY.md)."""
    param = "/sys/module/pinctrl_bcm2835/parameters/persist_gpio_outputs"
    persist = guest.sh(f"cat {param} 2>/dev/null || echo absent").out.strip()
    res.figure("persist_gpio_outputs", persist)
    for module in ("gpio-sim", "gpio-mockup"):
        found = guest.sh(f"modinfo -n {module} >/dev/null 2>&1 && echo present || echo absent")
        res.figure(f"{module.replace('-', '_')}_module", found.out.strip())


def check_web(guest: Guest, res: Results) -> None:
    wait_active(guest, "dermaguard-web", 300)
    token = guest.sh(
        "cat /var/lib/dermaguard/web-token /var/lib/dermaguard/simulation/web-token "
        "2>/dev/null | head -1"
    ).out.strip()
    res.check(bool(token), "the dashboard made its token in the state directory")
    base = f"http://127.0.0.1:{guest.ports['web']}"

    def status(opener: urllib.request.OpenerDirector, path: str) -> int:
        deadline = time.monotonic() + 120
        while True:
            try:
                with opener.open(base + path, timeout=30) as r:
                    return int(r.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    return 0
                time.sleep(1)

    bare = urllib.request.build_opener()
    res.check(status(bare, "/api/view") == 403, "dashboard from outside, no token: 403")
    res.check(status(bare, "/api/view?token=wrong") == 403, "dashboard, a wrong token: 403")
    jar = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    res.check(status(jar, f"/?token={token}") == 200, "dashboard with its token: signed in")
    res.check(status(jar, "/api/view") == 200, "dashboard API with the token's cookie: 200")


def check_cli_and_journal(guest: Guest, res: Results) -> None:
    guest.sh(
        "id alice >/dev/null 2>&1 || useradd -m -G dermaguard alice; "
        "id bob >/dev/null 2>&1 || useradd -m bob"
    )
    for cmd in ("status", "history"):
        alice = guest.sh(f"runuser -u alice -- {DG} {cmd} --simulation --config {seam.CONFIG} 2>&1")
        res.check(alice.rc == 0, f"`dermaguard {cmd}` as a user in group dermaguard")
        if alice.rc:
            print(alice.out)
    bob = guest.sh(f"runuser -u bob -- {DG} history --simulation --config {seam.CONFIG} 2>&1")
    res.check(bob.rc != 0, "`dermaguard history` refused to a user outside the group")
    lines = guest.sh("journalctl -b _SYSTEMD_UNIT=dermaguard.service --no-pager -o cat | wc -l")
    res.check(int(lines.out.strip() or 0) > 0, "journald holds the daemon's log lines")


def check_sandbox(guest: Guest, res: Results) -> None:
    pid = wait_active(guest, "dermaguard", 300)["MainPID"]
    enter = f"nsenter -t {pid} -m -S $(id -u dermaguard) -G $(id -g dermaguard) sh -c"
    for path in ("/etc/dermaguard/x", "/opt/dermaguard/x", "/var/lib/x", "/var/log/x", "/usr/x"):
        refused = guest.sh(f"{enter} 'echo x > {path}' 2>&1")
        res.check(refused.rc != 0, f"the sandbox refuses a write to {path}")
    home = guest.sh(f"{enter} 'ls /home/alice' 2>&1")
    res.check(home.rc != 0, "the sandbox hides /home")
    ok = guest.sh(
        f"{enter} 'echo x > {seam.STATE}/.sandbox-probe && rm {seam.STATE}/.sandbox-probe'"
    )
    res.check(ok.rc == 0, "the state directory is writable to the daemon")


# -- 4. power cuts ----------------------------------------------------------------------------


@dataclass
class Ledger:
    """Everything the outside subscriber received, across boots, and what the history held."""

    received: list[Received] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)
    reused: set[int] = field(default_factory=set)
    integrity_errors: int = 0
    not_closed: int = 0
    calibration_changed: int = 0

    def verify(self, state: dict[str, Any], calibration: str | None) -> None:
        if state.get("integrity") != ["ok"]:
            self.integrity_errors += 1
            print(f"  integrity_check: {state.get('integrity')}", flush=True)
        rows = state.get("events") or []
        by_id = {str(i): int(s) for s, i, _t in rows}
        by_seq = {int(s): str(i) for s, i, _t in rows}
        ids_of_seq: dict[int, set[str]] = {}
        for item in self.received:
            ids_of_seq.setdefault(item.seq, set()).add(item.id)
            if by_id.get(item.id) != item.seq:
                if item.id not in self.lost:
                    print(f"  lost: {item.type} seq {item.seq} (boot {item.boot})", flush=True)
                self.lost.add(item.id)
            held = by_seq.get(item.seq)
            if held is not None and held != item.id:
                self.reused.add(item.seq)
        self.reused |= {seq for seq, ids in ids_of_seq.items() if len(ids) > 1}
        open_left = len(state.get("open_sessions_before_boot") or []) + len(
            state.get("open_cycles_before_boot") or []
        )
        self.not_closed += open_left
        if calibration is not None and state.get("calibration") != calibration:
            self.calibration_changed += 1


PHASES = ("rolling", "uv", "replay")  # the scenario "uv" for "uv", else "rolling"


#: How long a phase waits for its event once the daemon is active: the scenario's switches and
#: pushes come ``seam.LEAD_S`` + 1-4 scenario seconds after its start (real seconds at the
#: emulated HX711's 10 samples/s), so this is several times what a slow TCG guest needs.
PHASE_WAIT_S = 120


def one_cut(guest: Guest, res: Results, watcher: Watcher, phase: str, rng: random.Random) -> str:
    """Run to a random moment of ``phase`` and cut the power; returns what was going on.

    ``watcher`` connected while the guest booted, so it saw this boot's events from the first
    it subscribed to (see seam.LEAD_S). A phase whose event never comes is a failed check that
    says what did come: a boot that starts no session or no UV-C cycle is a defect to find.
    """
    if phase == "replay":
        guest.sh("systemctl stop mosquitto")
        time.sleep(rng.uniform(20, 40))  # the session goes on; its events wait in the outbox
        mark = len(watcher.snapshot())
        guest.sh("systemctl start mosquitto")
        hit = watcher.wait_for(_ALL_TYPES, mark, PHASE_WAIT_S)
        res.check(
            hit is not None,
            f"the outbox replayed after the broker came back [{watcher.seen(mark)}]",
        )
        time.sleep(rng.uniform(0, 3))
        what = "the outbox replay" if hit else "the outbox replay (nothing replayed)"
    else:
        wanted, what, pause = {
            "rolling": ("session_started", "rolling", 20),
            "uv": ("sterilization_started", "a UV-C cycle", 30),
        }[phase]
        hit = watcher.wait_for({wanted}, 0, PHASE_WAIT_S)
        if hit is None:
            res.check(
                False, f"{wanted} within {PHASE_WAIT_S} s of the daemon's start [{watcher.seen()}]"
            )
            what += f" ({wanted} not seen)"
        elif watcher.subscribed_at is not None:  # the margin seam.LEAD_S buys
            what += f" (subscribed {hit.at - watcher.subscribed_at:.0f} s before {wanted})"
        time.sleep(rng.uniform(0, pause))
    guest.cut_power()
    return what


_ALL_TYPES = {e.value for e in EventType}  # any event the daemon publishes


def power_cuts(guest: Guest, res: Results, cuts: int, seed: int) -> None:
    rng = random.Random(seed)
    ledger = Ledger()
    cache = guest.disk_cache
    cuts_before = len(cache.cuts) if cache is not None else 0
    calibration = guest_check(guest).get("calibration")
    res.check(calibration is not None, "the calibration file exists before the cuts")
    use_scenario(guest, "rolling")
    watcher = Watcher(guest.ports["mqtt"], guest.boots)
    watcher.start()
    guest.sh("systemctl restart dermaguard", timeout=600)
    for n in range(cuts):
        phase = PHASES[n % len(PHASES)]
        wait_active(guest, "dermaguard", 600)
        following = PHASES[(n + 1) % len(PHASES)]
        use_scenario(guest, "uv" if following == "uv" else "rolling")  # for the next boot
        try:
            what = one_cut(guest, res, watcher, phase, rng)
        finally:
            watcher.stop()
            ledger.received += watcher.snapshot()
        dropped = ""
        if cache is not None and len(cache.cuts) > cuts_before + n:
            c = cache.cuts[-1]
            dropped = (  # (torn: a write whose blocks were partly kept counts as dropped)
                f"; the disk's cache dropped {c.writes_dropped} unflushed writes "
                f"({c.bytes_dropped} bytes): {c.blocks_dropped} blocks lost"
                + (f", {c.blocks_kept} blocks kept" if c.blocks_kept else "")
            )
        print(
            f"  cut {n + 1}/{cuts}: during {what}, {len(ledger.received)} events received so far"
            + dropped,
            flush=True,
        )
        watcher = Watcher(guest.ports["mqtt"], guest.boots + 1)
        boot(guest, res, on_launch=watcher.start)
        wait_active(guest, "dermaguard", 600)
        ledger.verify(guest_check(guest), str(calibration) if calibration else None)
    watcher.stop()
    res.figure("power_cuts", cuts)
    res.figure("acked_events_received", len(ledger.received))
    res.figure("acked_events_lost", len(ledger.lost))
    res.figure("seq_reused", len(ledger.reused))
    res.figure("integrity_errors", ledger.integrity_errors)
    res.figure("interrupted_left_open", ledger.not_closed)
    res.figure("calibration_changed", ledger.calibration_changed)
    if cache is not None:
        done = cache.cuts[cuts_before:]
        res.figure("disk_cuts", len(done))
        res.figure("disk_writes_dropped", sum(c.writes_dropped for c in done))
        res.figure("disk_bytes_dropped", sum(c.bytes_dropped for c in done))
        res.figure("disk_blocks_dropped", sum(c.blocks_dropped for c in done))
        res.figure("disk_blocks_kept", sum(c.blocks_kept for c in done))
        res.figure("disk_flushes", cache.disk.flushes)
        res.check(not cache.errors, f"the NBD layer saw no protocol errors {cache.errors}")
    for name in (
        "acked_events_lost",
        "seq_reused",
        "integrity_errors",
        "interrupted_left_open",
        "calibration_changed",
    ):
        res.check(res.figures[name] == 0, f"{name} is 0")


# -- 5. no real-time clock -------------------------------------------------------------------

CLOCK_QUERY = (
    "import json, sqlite3; c = sqlite3.connect('file:{db}?mode=ro', uri=True, timeout=30); "
    "print(json.dumps({{'events': c.execute('SELECT seq, wall FROM events WHERE seq > {after}')"
    ".fetchall(), 'sessions': c.execute('SELECT session_no, started_wall FROM sessions "
    "WHERE start_seq > {after}').fetchall()}}))"
)
#: A record is dated right when it is within this of the true time (the guest's clock runs a
#: little apart from the host's under emulation).
CLOCK_TOLERANCE_S = 120.0


def clock_step(guest: Guest, res: Results, label: str, rtc_base: str) -> int:
    """Boot with the RTC at ``rtc_base``, roll, then step the clock as NTP would and raise
    systemd-timesyncd's flag; returns how many records of that boot are still dated wrong."""
    guest.shutdown()
    guest.rtc_base = rtc_base
    booted = time.time()
    boot(guest, res)
    guest.rtc_base = None
    wait_active(guest, "dermaguard", 600)
    db = f"{seam.STATE}/dermaguard.db"
    last = guest_check(guest).get("events") or []
    after = max((int(e[0]) for e in last), default=0)
    stale = guest.sh("date +%s.%N")
    offset = time.time() - float(stale.out)  # what the guest's clock is behind the truth
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # a session of this boot, started and ended
        made = [(int(e[0]), e[2]) for e in guest_check(guest).get("events") or []]
        started = [seq for seq, kind in made if seq > after and kind == "session_started"]
        # (a session_ended of the boot's recovery closes the last boot's session: not this one)
        if started and any(kind == "session_ended" and seq > started[0] for seq, kind in made):
            break
        time.sleep(5)
    # The step, and the flag file systemd-timesyncd creates once it has synchronised: the test
    # seam for a time service the VM has no network for.
    stepped = time.time()
    guest.sh(
        f"date -s @{stepped:.3f} >/dev/null && mkdir -p /run/systemd/timesync && "
        "touch /run/systemd/timesync/synchronized",
        check=True,
    )
    time.sleep(30)  # the daemon notices the flag
    rows = json.loads(guest.sh(f'python3 -c "{CLOCK_QUERY.format(db=db, after=after)}"').out)
    # Made between the boot and the step: dated right within that span (or marked unknown).
    earliest, latest = booted - CLOCK_TOLERANCE_S, stepped + CLOCK_TOLERANCE_S
    walls: list[float | None] = [wall for _no, wall in rows["events"] + rows["sessions"]]
    wrong = sum(1 for wall in walls if wall is not None and not earliest <= wall <= latest)
    print(
        f"  {label}: guest clock {offset / 86400:.1f} days behind at boot, "
        f"{len(rows['events'])} events and {len(rows['sessions'])} sessions made before the "
        f"step, {wrong} still dated wrong",
        flush=True,
    )
    return wrong


def no_rtc(guest: Guest, res: Results) -> None:
    behind = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3 * 86400))
    wrong = clock_step(guest, res, "3 days behind", behind)
    wrong += clock_step(guest, res, "1970", "1970-01-01T00:00:00")
    res.figure("clock_step_records_wrong", wrong)
    res.check(wrong == 0, "clock_step_records_wrong is 0")


# -- the run ----------------------------------------------------------------------------------

#: ``--disk-cache``: what a power cut does to the writes the guest had not flushed.
DISK_MODELS = {
    "host": "host-cache",  # the raw file, cache=none: every write QEMU passed on survives
    "volatile": "volatile-write-back",  # nbd_cache.py: a cut drops all of them
    "torn": "volatile-write-back-torn",  # nbd_cache.py: a cut keeps a seeded half of the blocks
}


def disk_cache(args: argparse.Namespace, disk: Path, workdir: Path) -> NbdServer | None:
    """The root disk's volatile write-back cache, served over NBD for the whole run."""
    if args.disk_cache == "host":
        return None
    keep = 0.5 if args.disk_cache == "torn" else 0.0
    return NbdServer(WriteBackDisk(disk, keep=keep, seed=args.seed), workdir / "nbd.sock")


def run(args: argparse.Namespace) -> int:
    res = Results()
    t0 = time.monotonic()
    log: list[str] = []
    step("image" if args.arch == "amd64" else f"image ({args.arch})")
    img = (image_arm64 if args.arch == "arm64" else image_mod).ensure_image(log)
    print("\n".join(log), flush=True)
    res.figure("image_ready_s", round(time.monotonic() - t0, 1))
    workdir = Path(tempfile.mkdtemp(prefix="dermaguard-system-", dir=args.workdir))
    print(f"  work directory: {workdir}", flush=True)
    guest: Guest | None = None
    try:
        make_payload(workdir / "payload", img)
        disk, payload = image_mod.make_disks(img, workdir, workdir / "payload")
        snapshot = img.root / "provisioned.img"
        upgrade = args.quick and snapshot.exists()
        if upgrade:  # the last full provisioning of this image, on a disk of its own
            subprocess.run(["cp", "--sparse=always", str(snapshot), str(disk)], check=True)
        guest = Guest(img.kernel(), img.initrd(), disk, payload, workdir, arch=args.arch)
        guest.accel = choose_accel(guest, args.accel)
        res.figure("accel", guest.accel)
        guest.disk_cache = disk_cache(args, disk, workdir)
        res.figure("disk_model", DISK_MODELS[args.disk_cache])
        if upgrade:
            step("1-2. boot the image provisioned by an earlier run (cached), upgrade it")
            launched = boot(guest, res)
            ready_at(guest, res, launched)
            upgrade_package(guest, res)
            install_seam(guest)  # this checkout's scenarios
            guest.sh("systemctl restart dermaguard dermaguard-web", check=True, timeout=600)
            wait_active(guest, "dermaguard", 600)
        else:
            step("1. boot the clean image")
            launched = boot(guest, res)
            res.figure("first_boot_to_agent_s", round(time.monotonic() - launched, 1))
            step("2. provision from the checkout, offline")
            first_provisioning(guest, res)
            if args.arch == "arm64":
                check_lgpio_wheel(guest, res)
            guest.shutdown()
            save_snapshot(disk, snapshot)
            launched = boot(guest, res)
            ready_at(guest, res, launched)
            second_provisioning(guest, res)

        step("3. the real units: watchdog, crash, SIGKILL, stop path, dashboard, CLI, sandbox")
        measure_watchdog(guest, res)
        measure_crash(guest, res)
        measure_sigkill(guest, res)
        check_gpio_kernel(guest, res)
        check_web(guest, res)
        check_cli_and_journal(guest, res)
        check_sandbox(guest, res)

        step(f"4. {args.cuts} power cuts")
        power_cuts(guest, res, args.cuts, args.seed)

        if args.clock:
            step("5. no real-time clock: booted days behind and at 1970, then the clock stepped")
            no_rtc(guest, res)
    except GuestError as exc:
        res.check(False, f"the guest: {exc}")
    finally:
        if guest is not None:
            guest.shutdown()
            if guest.disk_cache is not None:
                guest.disk_cache.close()
                guest.disk_cache.disk.close()
    res.figure("total_s", round(time.monotonic() - t0, 1))
    if res.failures:
        print(f"FAILED: {len(res.failures)} check(s); serial logs in {workdir}", flush=True)
        for what in res.failures:
            print(f"  - {what}")
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print("system test passed", flush=True)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tests/system/run", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="for CI: start from the disk the last full run provisioned (when cached), "
        "2 power cuts instead of 21",
    )
    p.add_argument("--cuts", type=int, help="power cuts (default 21, --quick 2)")
    p.add_argument(
        "--clock",
        action=argparse.BooleanOptionalAction,
        help="step 5, no real-time clock (default: on, off with --quick)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=int(time.time()),
        help="for the cut moments (and, with --disk-cache torn, the blocks a cut keeps)",
    )
    p.add_argument(
        "--arch",
        choices=["amd64", "arm64"],
        default="amd64",
        help="the guest's architecture: arm64 is a Raspberry Pi's, emulated (TCG) on an x86 "
        "host, with an image of its own (tests/system/image_arm64.py)",
    )
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    p.add_argument(
        "--disk-cache",
        choices=list(DISK_MODELS),
        default="host",
        help="what a power cut does to the root disk's writes: host (a raw file, cache=none: "
        "every write QEMU passed on survives), volatile (an NBD server with a write-back cache, "
        "tests/system/nbd_cache.py: a cut drops every write not flushed), torn (the same, but a "
        "cut keeps a random half of the dirty 4 KiB blocks, drawn from --seed)",
    )
    p.add_argument("--workdir", default=os.environ.get("TMPDIR", "/var/tmp"))
    p.add_argument("--keep", action="store_true", help="keep the disks and serial logs")
    args = p.parse_args(argv)
    if args.cuts is None:
        args.cuts = 2 if args.quick else 21
    if args.clock is None:
        args.clock = not args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    print(f"seed: {args.seed}", flush=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
