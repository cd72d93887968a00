"""The whole daemon in simulation at 80 samples/s with MQTT to a local broker.

Prints one ``name: value unit`` line per figure (``#`` lines are context):

- start-up time to the first sample: from spawning ``dermaguard run --simulate`` to the first
  retained ``state`` that carries a force (published after the first processed sample). A
  cold start includes calibrating the emulated load cell (first run in a state directory), a
  warm start reads the stored calibration, as a daemon on a Pi does (target: within 2 s);
- CPU use as a fraction of one core over a steady stretch of rolling (the roller out of the dock,
  live force at 10 Hz over MQTT), from the process's own utime + stime in /proc (target ≤ 5 %).
  The HX711 emulator runs in the same process, so the figure is an upper bound for the daemon;
- peak resident memory (VmHWM) at the end (target ≤ 60 MB).

``--quick`` measures 15 s of rolling (about 40 s in all); the default is 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker import LOOPBACK, BenchFailure, Broker, mosquitto_version
from dermaguard.config import simulation_device_id
from figures import line

DEVICE = "benchdaemon"
#: The simulation publishes as its own device (see dermaguard.config.simulation_device_id).
SIM_DEVICE = simulation_device_id(DEVICE)
TICKS = os.sysconf("SC_CLK_TCK")

SCENARIO = """
name: steady_rolling
description: out of the dock and rolling at a steady, safe force for the whole run
duration_s: {duration}
initial: {{lid: open, dock: out}}
config:
  device_id: {device}
force:
  - {{t: 0, n: 0}}
  - {{t: 1, n: 2.0}}
  - {{t: {end}, n: 2.2}}
"""


class FirstSample:
    """Subscribes to the device's state; notes when a state with a known force arrives."""

    def __init__(self, port: int) -> None:
        self.seen = threading.Event()
        self.t: float | None = None
        self.force_msgs = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_a: c.subscribe(f"dermaguard/{SIM_DEVICE}/#", qos=1)
        self._client.connect(LOOPBACK, port)
        self._client.loop_start()

    def reset(self) -> None:
        self.seen.clear()
        self.t = None
        self.force_msgs = 0

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/force"):
            self.force_msgs += 1
        fresh = msg.topic.endswith("/state") and not msg.retain and not self.seen.is_set()
        if fresh and json.loads(msg.payload).get("force_n") is not None:
            self.t = time.perf_counter()
            self.seen.set()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    raise BenchFailure("no VmHWM in /proc")


def run_once(
    scenario: Path, state: Path, port: int, watcher: FirstSample, measure_s: float
) -> tuple[float, float | None, float]:
    """One daemon run: (start-up to first sample, CPU fraction or None, peak RSS MB)."""
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONUNBUFFERED": "1"}
    env.pop("STATE_DIRECTORY", None)
    watcher.reset()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "dermaguard", "run"),
            *("--simulate", str(scenario), "--mqtt", f"{LOOPBACK}:{port}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        if not watcher.seen.wait(30.0):
            raise BenchFailure("no state with a force within 30 s of start")
        assert watcher.t is not None
        startup = watcher.t - t0
        cpu: float | None = None
        if measure_s > 0:
            time.sleep(2.0)  # past start-up: imports, calibration and the first connects
            c0, w0, msgs0 = cpu_s(proc.pid), time.perf_counter(), watcher.force_msgs
            time.sleep(measure_s)
            c1, w1, msgs1 = cpu_s(proc.pid), time.perf_counter(), watcher.force_msgs
            cpu = (c1 - c0) / (w1 - w0)
            print(f"# live force messages during the window: {(msgs1 - msgs0) / (w1 - w0):.1f}/s")
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise BenchFailure(f"daemon exited with {proc.returncode}: {err[-2000:]}")
    return startup, cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s of rolling instead of 60")
    args = parser.parse_args()
    measure_s = 15.0 if args.quick else 60.0
    print(
        f"# mosquitto {mosquitto_version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="dg-bench-daemon-") as tmp:
        work = Path(tmp)
        scenario = work / "steady.yaml"
        duration = int(measure_s) + 120
        scenario.write_text(SCENARIO.format(duration=duration, end=duration, device=DEVICE))
        with Broker(work) as broker:
            watcher = FirstSample(broker.port)
            try:
                cold, _, _ = run_once(scenario, work / "state", broker.port, watcher, 0.0)
                warm, cpu, rss = run_once(scenario, work / "state", broker.port, watcher, measure_s)
            finally:
                watcher.close()
    line("startup_to_first_sample_cold", cold, "s")
    line("startup_to_first_sample_warm", warm, "s")
    assert cpu is not None
    line("cpu_one_core_fraction", cpu * 100, "%")
    line("peak_rss", rss, "MB")


if __name__ == "__main__":
    try:
        main()
    except BenchFailure as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
