"""Where the device's state lives: one rule for the daemon, the CLI and the dashboard.

A simulation keeps its own state directory, so a demo never counts as a real session nor
overwrites a real calibration. Paths only: nothing here opens a file or touches hardware, so a
command that only reads the history need not load the hardware shell to find it.
"""

from __future__ import annotations

from pathlib import Path

from dermaguard.config.load import Config

DB_NAME = "dermaguard.db"
SIM_CALIBRATION_NAME = "calibration.json"


def state_dir(config: Config, *, simulated: bool) -> Path:
    """The state directory: the configured one, or its ``simulation/`` subdirectory."""
    base = config.resolved_state_dir()
    return base / "simulation" if simulated else base


def store_path(config: Config, *, simulated: bool) -> Path:
    """The history database."""
    return state_dir(config, simulated=simulated) / DB_NAME


def calibration_file(config: Config, *, simulated: bool) -> Path:
    """The calibration: as configured on the device, a fixed name inside a simulation's state."""
    if simulated:
        return state_dir(config, simulated=True) / SIM_CALIBRATION_NAME
    return config.calibration_path()
