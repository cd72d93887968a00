"""The installed systemd service, as seen by a command a person runs on the Pi.

The service owns the GPIO while it runs and keeps its state in ``/var/lib/dermaguard``; a
command run from a login shell has neither. So ``calibrate`` on real hardware first asks systemd
whether the service runs or is installed, and when it would clash with it or write where the
service never reads, it stops and prints the exact commands instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from dermaguard.config.load import Config

SERVICE = "dermaguard.service"
SERVICE_USER = "dermaguard"
SERVICE_STATE_DIR = Path("/var/lib/dermaguard")
SERVICE_CONFIG = Path("/etc/dermaguard/dermaguard.yaml")
SERVICE_BIN = Path("/opt/dermaguard/venv/bin/dermaguard")

ServiceState = Literal["active", "installed", "absent"]


def service_state() -> ServiceState:
    """Whether systemd runs the service, only knows it, or has no such unit (or no systemd)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return "absent"
    try:
        shown = subprocess.run(
            [systemctl, "show", "--property=LoadState,ActiveState", "--", SERVICE],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "absent"
    props = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    if props.get("LoadState") != "loaded":
        return "absent"
    return (
        "active"
        if props.get("ActiveState") in ("active", "activating", "reloading")
        else ("installed")
    )


def service_command(args: str, config_path: Path | None) -> str:
    """``dermaguard ARGS`` as the service user, with the service's state directory and config."""
    config = config_path if config_path is not None else SERVICE_CONFIG
    return (
        f"sudo -u {SERVICE_USER} env STATE_DIRECTORY={SERVICE_STATE_DIR} LG_WD=/tmp "
        f"{SERVICE_BIN} {args} -c {shlex.quote(str(config))}"
    )


def calibrate_clash(
    config: Config,
    config_path: Path | None,
    calibrate_args: str,
    state: ServiceState,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Why ``calibrate`` must not run as it is, with the commands that work; ``None`` if fine.

    A running service holds the GPIO (the reads would fail or fight it); with the service
    installed, a calibration outside its state directory lands where it never reads it.
    """
    env = os.environ if environ is None else environ
    commands = "\n".join(
        (
            "  sudo systemctl stop dermaguard",
            "  " + service_command(calibrate_args, config_path),
            "  sudo systemctl start dermaguard",
        )
    )
    if state == "active":
        return (
            "the dermaguard service is running and holds the GPIO: calibrate with it stopped, "
            f"as its user and in its state directory:\n{commands}"
        )
    state_dir = config.resolved_state_dir(env)
    if state == "installed" and state_dir != SERVICE_STATE_DIR:
        return (
            f"the dermaguard service reads its calibration from {SERVICE_STATE_DIR}, but this "
            f"would write it to {state_dir}; calibrate as the service user instead:\n{commands}"
        )
    return None
