"""A run on real hardware never loads the simulator (docs/ARCHITECTURE.md, Layers).

import-linter (tests/unit/test_layers.py) checks the imports written in the code; this checks
what a fresh interpreter actually loads: the CLI, and the daemon's assembly opening the real
hardware path. gpiozero's own mock factory stands in for the Pi's GPIO and a stub for its SPI
bus, so nothing of ``dermaguard.sim`` is needed to get there.
"""

from __future__ import annotations

import subprocess
import sys

REAL_PATH = """
import sys

from gpiozero.pins.mock import MockFactory

import dermaguard.ui.cli
from dermaguard.config.load import parse_config
from dermaguard.daemon import app, hw_check, load_cell, run


class Bus:
    def transfer(self, data):
        return [0] * len(data)

    def close(self):
        pass


app.real_pin_factory = MockFactory  # the Pi's backend, as far as the assembly can tell
load_cell.open_spi = lambda *args, **kwargs: Bus()
for interface in ("spi", "gpio"):
    hw = app.open_hardware(parse_config({"hx711": {"interface": interface}}), None, 1.0)
    assert hw.sim is None
    hw.close()
print(" ".join(sorted(m for m in sys.modules if m.startswith("dermaguard."))))
"""


def test_the_real_hardware_path_loads_no_simulator_module() -> None:
    result = subprocess.run(
        [sys.executable, "-c", REAL_PATH], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "dermaguard.daemon.app" in loaded
    assert "dermaguard.hw.hx711_spi" in loaded
    assert [m for m in loaded if m == "dermaguard.sim" or m.startswith("dermaguard.sim.")] == []
