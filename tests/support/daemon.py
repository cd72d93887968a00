"""Running the daemon as a person does, in a child process, against a test broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dermaguard.store import StoreError, open_readonly

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
#: The device id a simulated daemon publishes and records as: the default device_id's
#: simulation id, never the real device's.
DEVICE = "dermaguard-sim"


def env_for(state: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONUNBUFFERED": "1"}
    env.pop("STATE_DIRECTORY", None)
    env.pop("DERMAGUARD_MQTT_PASSWORD", None)
    env.update(extra or {})
    return env


def run_cli(*args: str, state: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m dermaguard ARGS`` to completion, with its state under ``state``."""
    return subprocess.run(
        [sys.executable, "-m", "dermaguard", *args],
        capture_output=True,
        text=True,
        env=env_for(state),
        timeout=timeout,
        check=False,
    )


def _run(
    state: Path, args: list[str], env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -m dermaguard run ARGS`` with its state under ``state``, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "dermaguard", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(state, env),
    )


def _simulate(scenario: Path | str, speed: float) -> list[str]:
    """``--simulate`` arguments: a scenario file, or the name of one shipped in scenarios/."""
    path = scenario if isinstance(scenario, Path) else SCENARIOS / f"{scenario}.yaml"
    return ["--simulate", str(path), "--speed", f"{speed:g}"]


def start(
    state: Path,
    scenario: Path | str,
    *,
    port: int | None,
    speed: float = 10.0,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``dermaguard run --simulate`` with MQTT to 127.0.0.1:``port`` (``None``: MQTT off)."""
    mqtt = ["--mqtt", f"127.0.0.1:{port}"] if port is not None else ["--no-mqtt"]
    return _run(state, [*_simulate(scenario, speed), *mqtt, *args], env)


def start_with_config(
    state: Path, scenario: Path | str, config: Path, *, speed: float = 10.0
) -> subprocess.Popen[str]:
    """``dermaguard run --simulate`` with the broker the config file names."""
    return _run(state, ["--config", str(config), *_simulate(scenario, speed)])


def finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"daemon did not finish in {timeout} s\n{err[-3000:]}") from None
    return proc.returncode, out, err


def stop(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str, str]:
    """SIGTERM, as systemd stops the service, then :func:`finish`: a clean stop exits 0."""
    proc.send_signal(signal.SIGTERM)
    return finish(proc, timeout)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def db_path(state: Path) -> Path:
    return state / "dermaguard" / "simulation" / "dermaguard.db"


def stored_events(state: Path) -> list[dict[str, Any]]:
    """Every event in the simulation's event log, oldest first."""
    path = db_path(state)
    try:
        reader = open_readonly(path)
    except StoreError:  # not created yet, or being created right now
        return []
    with reader:
        out: list[dict[str, Any]] = []
        while batch := reader.events(out[-1]["seq"] if out else 0, 1000):
            out.extend(batch)
        return out


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition (a database, a process) that has no notification to wait on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def write_scenario(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


#: Out of the dock and rolling, with a push over the limit every 10 s: a steady stream of
#: over_pressure / over_pressure_cleared events inside one long session.
PUSHES = """
name: pushes
description: one long session with an over-pressure push every 10 s
duration_s: {duration}
initial: {{lid: open, dock: out}}
force:
{force}
"""


def pushes_scenario(path: Path, duration: int = 120) -> Path:
    points = ["  - {t: 0, n: 0}", "  - {t: 2, n: 2.0}"]
    for start in range(8, duration - 6, 10):
        points += [
            f"  - {{t: {start}, n: 2.0}}",
            f"  - {{t: {start + 1}, n: 5.5}}",
            f"  - {{t: {start + 2}, n: 5.5}}",
            f"  - {{t: {start + 3}, n: 2.0}}",
        ]
    points += [f"  - {{t: {duration - 2}, n: 0}}", f"  - {{t: {duration}, n: 0}}"]
    return write_scenario(path, PUSHES.format(duration=duration, force="\n".join(points)))


def schema_for(topic: str) -> str | None:
    """The schema a message on ``topic`` must follow (``None``: not JSON, e.g. availability)."""
    base = f"dermaguard/{DEVICE}/"
    if topic.startswith("homeassistant/device/"):
        return "discovery"
    names = {"state": "state", "force": "force", "event": "event", "session/last": "session_last"}
    return names.get(topic.removeprefix(base)) if topic.startswith(base) else None


def assert_valid_payloads(messages: list[Any]) -> int:
    """Validate every JSON message against its schema; returns how many were checked."""
    from jsonschema import Draft202012Validator

    from dermaguard.mqtt.schema_files import load_schema

    validators: dict[str, Draft202012Validator] = {}
    checked = 0
    for m in messages:
        name = schema_for(m.topic)
        if name is None:
            continue
        if name not in validators:
            validators[name] = Draft202012Validator(load_schema(name))
        errors = sorted(validators[name].iter_errors(m.json()), key=str)
        assert not errors, f"{m.topic}: {errors[0].message}\n{m.payload[:500]!r}"
        checked += 1
    return checked
