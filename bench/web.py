"""The web dashboard under load: ten browsers' worth of live clients, beside the daemon.

Prints one ``name: value unit`` line per figure (``#`` lines are context). One run, one broker,
one simulated daemon rolling at a safe force with a push over the limit every 5 s:

1. without the dashboard: the daemon's CPU (fraction of one core, from /proc) and its alert
   latency, from the ``over_pressure`` event's own time stamp (the engine's detection) to its
   arrival at a subscriber here: the commit to SQLite, the publish and the broker, so a daemon
   slowed by its neighbour shows here. The simulated clock runs apart from this machine's, so
   the time stamps are put on this machine's clock with the least delay any live-force
   message showed (its ``t`` to its arrival): the figure is the event's extra delay over the
   fastest path through the broker;
2. the same, with ``dermaguard web`` running and 10 clients holding its live stream (the
   server-sent events a browser's page opens), plus the dashboard's CPU and peak memory
   (targets: <= 5 % of a core at 10 Hz live force with 10 clients, RSS <= 80 MB), and the
   live-force latency from the MQTT message (its arrival at a subscriber here) to the same
   sample's event at each client (target: p99 <= 100 ms).

``--quick`` measures 15 s per phase (about 50 s in all); the default is 60 s. ``--smoke``
measures 3 s per phase with a push every 2 s (about 15 s in all), only to prove every figure can
still be made: it fails when one cannot (no live force, no alert, no event at a client), and its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker import LOOPBACK, BenchFailure, Broker, mosquitto_version
from daemon import cpu_s, peak_rss_mb
from figures import line, pct

DEVICE = "benchweb"
#: A simulation publishes as ``<device_id>-sim``: the device the daemon, the watcher and the
#: dashboard all speak of.
SIM_DEVICE = f"{DEVICE}-sim"
CLIENTS = 10
PUSH_EVERY_S = 5.0


def scenario(duration: int, push_every_s: float = PUSH_EVERY_S) -> str:
    """Rolling at 2 N, one second over the 4.5 N limit every ``push_every_s`` seconds."""
    keys = ["  - {t: 0, n: 0}", "  - {t: 1, n: 2.0}"]
    t = 3.0
    while t + 2 < duration:
        keys += [f"  - {{t: {t:g}, n: 2.0}}", f"  - {{t: {t + 0.1:g}, n: 5.5}}"]
        keys += [f"  - {{t: {t + 1:g}, n: 5.5}}", f"  - {{t: {t + 1.1:g}, n: 2.0}}"]
        t += push_every_s
    keys.append(f"  - {{t: {duration}, n: 2.0}}")
    return (
        f"name: bench_web\ndescription: rolling with a push every {push_every_s:g} s\n"
        f"duration_s: {duration}\ninitial: {{lid: open, dock: out}}\n"
        f"config:\n  device_id: {DEVICE}\nforce:\n" + "\n".join(keys) + "\n"
    )


class Watcher:
    """A subscriber to the device's force and events: alert latency, force arrival times."""

    def __init__(self, port: int) -> None:
        base = f"dermaguard/{SIM_DEVICE}"
        self.force_topic, self.event_topic = f"{base}/force", f"{base}/event"
        self._lock = threading.Lock()
        self.force_at: dict[float, float] = {}  # device t -> arrival (monotonic)
        # The simulated clock's offset from this machine's: the least (arrival - t) seen.
        self.offset_s = float("inf")
        self.stamps: list[tuple[float, float]] = []  # (arrival wall time, event ts)
        self.started = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.connect(LOOPBACK, port)
        self._client.subscribe([(self.force_topic, 0), (self.event_topic, 1)])
        self._client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now, wall = time.monotonic(), time.time()
        data = json.loads(msg.payload)
        with self._lock:
            if msg.topic == self.force_topic:
                self.force_at[float(data["t"])] = now
                self.offset_s = min(self.offset_s, wall - float(data["t"]))
                self.started.set()
            elif data["type"] == "over_pressure":
                stamped = datetime.strptime(data["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                self.stamps.append((wall, stamped.replace(tzinfo=UTC).timestamp()))

    def take_alerts(self) -> list[float]:
        """Each over_pressure event's delay from its time stamp to its arrival here, in ms."""
        with self._lock:
            stamps, self.stamps = self.stamps, []
            return [(wall - ts - self.offset_s) * 1000.0 for wall, ts in stamps]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def _client(
    base: str, token: str, watcher: Watcher, out: list[float], stop: asyncio.Event
) -> None:
    """One browser's live stream: notes each force sample's delay after the watcher's."""
    reader, writer = await asyncio.open_connection(LOOPBACK, int(base.rsplit(":", 1)[1]))
    writer.write(
        f"GET /api/stream HTTP/1.1\r\nHost: {base.split('//')[1]}\r\n"
        f"Cookie: dermaguard_token={token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    kind = ""
    try:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(reader.readline(), 0.5)
            except TimeoutError:
                continue
            if not raw:
                raise BenchFailure("the dashboard closed a live stream")
            text = raw.decode("utf-8", "replace").strip()
            if text.startswith("event: "):
                kind = text[7:]
            elif text.startswith("data: ") and kind == "force":
                now = time.monotonic()
                sample = json.loads(text[6:])
                sent = watcher.force_at.get(sample.get("t"))
                if sent is not None:
                    out.append((now - sent) * 1000.0)
    finally:
        writer.close()


def _clients(
    base: str, token: str, watcher: Watcher, out: list[float], stop: threading.Event
) -> None:
    async def main() -> None:
        done = asyncio.Event()
        tasks = [
            asyncio.create_task(_client(base, token, watcher, out, done)) for _ in range(CLIENTS)
        ]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        done.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def _env(state: Path) -> dict[str, str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONUNBUFFERED": "1"}
    env.pop("STATE_DIRECTORY", None)
    return env


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchFailure(f"dermaguard web exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchFailure(f"dermaguard web did not answer within {timeout} s")


def measure(pid: int, seconds: float) -> float:
    c0, w0 = cpu_s(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_s(pid) - c0) / (time.perf_counter() - w0)


def phase_line(name: str, values: list[float], unit: str) -> None:
    if not values:
        raise BenchFailure(f"no samples for {name}")
    line(f"{name}_p50", pct(values, 0.5), unit)
    line(f"{name}_p99", pct(values, 0.99), unit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s per phase instead of 60")
    parser.add_argument(
        "--smoke", action="store_true", help="2 s per phase: can every figure still be made?"
    )
    args = parser.parse_args()
    window = 3.0 if args.smoke else 15.0 if args.quick else 60.0
    push_every_s = 2.0 if args.smoke else PUSH_EVERY_S  # an alert in every short phase
    print(
        f"# mosquitto {mosquitto_version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="dg-bench-web-") as tmp:
        work = Path(tmp)
        path = work / "scenario.yaml"
        path.write_text(scenario(int(2 * window) + 120, push_every_s))
        state = work / "state"
        with Broker(work) as broker:
            watcher = Watcher(broker.port)
            procs: list[subprocess.Popen[bytes]] = []
            stop = threading.Event()
            try:
                run = [sys.executable, "-m", "dermaguard", "run", "--simulate", str(path)]
                run += ["--mqtt", f"{LOOPBACK}:{broker.port}"]
                daemon = subprocess.Popen(
                    run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(state)
                )
                procs.append(daemon)
                if not watcher.started.wait(30):
                    raise BenchFailure("no live force from the daemon within 30 s")
                settle_s = 0.5 if args.smoke else 2.0
                time.sleep(settle_s)  # past start-up
                watcher.take_alerts()
                cpu_without = measure(daemon.pid, window)
                alerts_without = watcher.take_alerts()

                port = _free_port()
                web_cmd = [
                    sys.executable,
                    "-m",
                    "dermaguard",
                    "web",
                    "--simulate",
                    "--device",
                    SIM_DEVICE,
                ]
                web_cmd += ["--mqtt", f"{LOOPBACK}:{broker.port}", "--listen", LOOPBACK]
                web_cmd += ["--port", str(port)]
                web = subprocess.Popen(
                    web_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(state)
                )
                procs.append(web)
                base = f"http://{LOOPBACK}:{port}"
                _wait_http(f"{base}/healthz", web)
                token = (state / "dermaguard" / "web-token").read_text().strip()
                delays: list[float] = []
                clients = threading.Thread(
                    target=_clients, args=(base, token, watcher, delays, stop), daemon=True
                )
                clients.start()
                time.sleep(settle_s)  # every client connected and streaming
                delays.clear()
                watcher.take_alerts()
                c0 = cpu_s(web.pid)
                cpu_with = measure(daemon.pid, window)
                web_cpu = (cpu_s(web.pid) - c0) / window
                alerts_with = watcher.take_alerts()
                web_rss = peak_rss_mb(web.pid)
                got = list(delays)
                stop.set()
                clients.join(10)
            finally:
                stop.set()
                for proc in reversed(procs):
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                watcher.close()
    print(f"# {window:g} s per phase; {len(alerts_without)} and {len(alerts_with)} alerts")
    line("daemon_cpu_without_web", cpu_without * 100, "%")
    line("daemon_cpu_with_web_10_clients", cpu_with * 100, "%")
    phase_line("daemon_alert_latency_without_web", alerts_without, "ms")
    phase_line("daemon_alert_latency_with_web", alerts_with, "ms")
    line("web_cpu_10_clients_10hz", web_cpu * 100, "%")
    line("web_peak_rss", web_rss, "MB")
    print(f"# {len(got)} force events at the clients ({len(got) / window / CLIENTS:.1f}/s each)")
    phase_line("live_force_mqtt_to_client", got, "ms")
    met = web_cpu <= 0.05 and web_rss <= 80.0 and pct(got, 0.99) <= 100.0
    print(
        "# targets (web CPU <= 5 %, RSS <= 80 MB, live force p99 <= 100 ms): "
        + ("met" if met else "NOT MET")
        + (" (a smoke run: its figures mean nothing)" if args.smoke else "")
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    try:
        main()
    except BenchFailure as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
