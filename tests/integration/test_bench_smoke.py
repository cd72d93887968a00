"""Every benchmark in ``bench/`` still produces its figures: each run in its smoke mode (a few
seconds), so a benchmark can never rot unnoticed. The figures of a smoke run mean nothing; that
they are all there, as numbers, is the test.

``bench/soak.py`` and ``bench/mutation.py`` have their own runs in the suite
(``tests/faults/test_soak.py``, ``tests/integration/test_mutation_quick.py``).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.subprocess, pytest.mark.broker, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench"
FIGURE = re.compile(r"^([a-z0-9_]+): (\S+) (\S.*)$")

#: Each benchmark, its smoke arguments, and figures it must print (besides any others).
SMOKES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "case.py": (("--smoke",), ("case_core_per_input_p99",)),
    "storage.py": (("--smoke",), ("session_summary_commit_p99",)),
    "mqtt.py": (("--smoke",), ("outbox_drain_rate", "event_latency_p99")),
    "pressure.py": (
        ("--smoke",),
        (
            "alarm_stated_filter_delay",
            "spi_own_clock_lost_per_10k",
            "spi_own_clock_stall_lost_per_10k",
            "spi_own_clock_stall_lost_beside_a_gil_burst_over_one_period",
            "spi_own_clock_stall_alert_latency_episodes",
        ),
    ),
    "daemon.py": (
        ("--smoke",),
        (
            *(
                f"{side}_{figure}"
                for side in ("spi", "spi_ready")
                for figure in (
                    "daemon_cpu_us_per_conversion",
                    "daemon_wakeups_per_conversion",
                    "transfers_per_conversion",
                    "wakeups_per_second",
                    "frames_bus_cpu_us_per_conversion",
                )
            ),
            "host_sleep_wake_cpu_us",
            "host_timed_wait_wake_cpu_us",
            "host_handoff_cpu_us",
            "host_engine_sample_hot_cpu_us",
            "host_engine_sample_after_sleep_cpu_us",
        ),
    ),
    "web.py": (
        ("--smoke",),
        ("web_cpu_10_clients_10hz", "web_peak_rss", "live_force_mqtt_to_client_p99"),
    ),
    "faults.py": (("--schedules", "1"), ("wall_time",)),
}


def test_every_benchmark_script_has_a_smoke_run_here() -> None:
    helpers = {"broker.py", "daemon_threads.py", "figures.py", "soak.py", "mutation.py"}
    helpers |= {"core_ab.py"}  # an A/B of pressure.py's core figures: its own test below
    scripts = {p.name for p in BENCH.glob("*.py")} - helpers
    assert scripts == set(SMOKES)


@pytest.mark.parametrize("script", sorted(SMOKES))
def test_the_benchmark_produces_its_figures(script: str) -> None:
    args, required = SMOKES[script]
    run = subprocess.run(
        [sys.executable, script, *args],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, f"{script} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    figures: dict[str, float] = {}
    for row in run.stdout.splitlines():
        found = FIGURE.match(row)
        if found:
            figures[found[1]] = float(found[2])
    assert figures, f"{script} printed no figure:\n{run.stdout}"
    assert all(math.isfinite(v) for v in figures.values()), figures
    missing = [name for name in required if name not in figures]
    assert not missing, f"{script} did not print {missing}"


def test_the_core_ab_comparison_prints_both_sides_and_their_difference() -> None:
    """``core_ab.py`` runs pressure.py's core in two source trees by turns: here the same tree
    twice, one short round."""
    src = str(BENCH.parent / "src")
    run = subprocess.run(
        [sys.executable, "core_ab.py", src, src, "--rounds", "1", "--samples", "300"],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    row = re.compile(r"^core_per_sample_median: A (\S+)\s+B (\S+)\s+B-A median (\S+)", re.M)
    found = row.search(run.stdout)
    assert found is not None, run.stdout
    assert all(math.isfinite(float(v)) for v in found.groups())
