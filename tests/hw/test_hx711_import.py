"""Importing the adafruit library through the driver prints nothing and leaks no shims."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dermaguard.hw import hx711


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


def test_importing_the_driver_prints_nothing() -> None:
    assert run("import dermaguard.hw.hx711").stdout == ""


def test_loading_the_library_prints_nothing_and_restores_sys_modules() -> None:
    code = (
        "import sys\n"
        "from dermaguard.hw.hx711 import load_library, MICROCONTROLLER\n"
        "lib = load_library()\n"
        "assert lib.microcontroller is MICROCONTROLLER\n"
        "assert 'microcontroller' not in sys.modules\n"
        "assert 'digitalio' not in sys.modules\n"
        "assert lib.HX711.CHAN_A_GAIN_128 == 25\n"
    )
    result = run(code)
    assert result.stdout == ""
    assert result.stderr == ""


def test_library_imported_earlier_is_repointed_at_the_shim() -> None:
    code = (
        "import adafruit_hx711.hx711 as lib\n"  # Blinka's own microcontroller, with its warning
        "from dermaguard.hw.hx711 import load_library, MICROCONTROLLER\n"
        "assert load_library() is lib\n"
        "assert lib.microcontroller is MICROCONTROLLER\n"
        "print('repointed')\n"
    )
    assert run(code).stdout.strip().endswith("repointed")


@pytest.mark.parametrize(
    ("asked_us", "at_least_ns"), [(1, hx711.PULSE_MIN_NS), (0.5, 200), (30, 30_000)]
)
def test_delay_is_a_busy_wait_of_at_least_the_datasheet_minimum(
    asked_us: float, at_least_ns: int
) -> None:
    """The library's 1 µs pulse waits keep to the datasheet's 0.2 µs; longer waits are whole."""
    start = time.perf_counter_ns()
    hx711.MICROCONTROLLER.delay_us(asked_us)
    assert time.perf_counter_ns() - start >= at_least_ns


def test_shim_interrupt_calls_do_nothing() -> None:
    hx711.MICROCONTROLLER.disable_interrupts()
    hx711.MICROCONTROLLER.enable_interrupts()
    assert hx711.load_library().microcontroller is hx711.MICROCONTROLLER
