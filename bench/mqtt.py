"""MQTT benchmark: outbox drain after an outage against raw paho, and event latency end to end.

Prints one ``name: value unit`` line per figure (``#`` lines are context, not figures), measured
against a real Mosquitto that the benchmark starts on a free loopback port and stops itself.
``--quick`` keeps the run under a minute.

- Outbox drain: N = 10,000 realistic events (sessions of 50: ``session_started``, 24
  over-pressure episodes, ``session_ended``) are committed through a :class:`StoreSink` while
  no bridge runs, as a daemon finds them when it starts after an outage. A live outage ends in
  the same place (the outbox's memory queue overflows at 2,000 events into backlog mode, which
  reads pages from the database), and starting the bridge afterwards keeps paho's reconnect
  back-off (1 to 30 s) out of a throughput figure. Then an :class:`MqttBridge` starts and the
  clock runs from ``start()`` (the loopback CONNECT included, a millisecond or two) until the
  bridge has passed the last event's PUBACK on to ``mark_delivered``; each round then checks
  ``drain()``, that the outbox published each event once, and that the store holds all N
  marked delivered after ``sink.flush()``.
- Raw paho: the same N envelope bytes published at QoS 1 by a bare paho client (MQTT 5, the
  bridge's ``MAX_INFLIGHT``, defaults otherwise) as fast as it takes them, until the last
  PUBACK. The two alternate over several rounds, and the medians are compared (target: the
  outbox at least half of raw). The bridge also publishes the retained ``session/last`` for
  each ``session_ended`` (2 % more messages than raw); they are not counted as events.
- Latency: events emitted one at a time through the sink, 12.5 ms apart (80 samples/s), each
  stamped with ``perf_counter`` when handed to the sink, until an independent subscriber in
  this process receives it on ``…/event`` (target: p99 at most 50 ms). Measured at the
  daemon's switch interval, at Python's default one, and with a thread that spins in pure
  Python 90 % of each 12.5 ms period, as the HX711 bit-banging sampler may.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from broker import LOOPBACK, BenchFailure, Broker, mosquitto_version
from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import EmitEvent, Event
from dermaguard.daemon.run import SWITCH_INTERVAL_S
from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.client import MAX_INFLIGHT
from dermaguard.mqtt.outbox import OutEvent
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import Topics
from dermaguard.store import Store, StoreSink, open_readonly
from figures import line, pct

DEVICE = "bench"
N_EVENTS = 10_000
SESSION_EVENTS = 50
PERIOD_S = 1 / 80
DEFAULT_SWITCH_S = 0.005
WALL0 = 1_764_096_623.0
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
WARMUP_EVENTS = 5


# -- clients --------------------------------------------------------------------------------


def settings(port: int, client_id: str) -> MqttSettings:
    return MqttSettings(
        host=LOOPBACK,
        port=port,
        version="5",
        client_id=client_id,
        keepalive_s=60,
        topics=Topics(DEVICE),
        discovery=False,
    )


def open_bridge(path: Path, port: int, client_id: str) -> tuple[MqttBridge, StoreSink]:
    """Store, sink and bridge wired as ``run.run_daemon`` wires them (not started)."""
    store = Store.open(path, DEVICE)
    bridge = MqttBridge(
        settings(port, client_id),
        open_events=lambda: open_readonly(path),
        device_name="bench",
        sw_version="bench",
    )
    sink = StoreSink(store, time.time, on_stored=bridge.on_stored)
    bridge.bind(put_command=lambda _c: None, mark_delivered=sink.mark_delivered)
    return bridge, sink


def connected_client(
    port: int, client_id: str, *, max_inflight: int | None = None, **callbacks: Callable[..., None]
) -> tuple[mqtt.Client, threading.Event]:
    """A bare paho 2.x MQTT 5 client, connected, its network thread running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)  # only before connecting
    ready = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any = None) -> None:
        if not rc.is_failure:
            ready.set()

    client.on_connect = on_connect
    for name, callback in callbacks.items():
        setattr(client, name, callback)
    client.connect(LOOPBACK, port, keepalive=60)
    client.loop_start()
    if not ready.wait(10.0):
        client.loop_stop()
        raise BenchFailure(f"{client_id} could not connect")
    return client, ready


def close_client(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


# -- outbox drain and raw paho --------------------------------------------------------------


def backlog_event(i: int) -> Event:
    """Event ``i`` of a backlog: sessions of 50 with 24 over-pressure episodes each."""
    no, k = divmod(i, SESSION_EVENTS)
    t0 = no * 900.0
    t = t0 + k * 10.0
    started = iso_utc(WALL0 + t0)
    if k == 0:
        return Event(
            "session_started",
            t,
            {
                "session_no": no + 1,
                "started_at": started,
                "sterile": True,
                "cycle_id": no + 1,
                "rest_interval_s": 600.0,
                "too_soon": False,
                "roller_id": 1,
                "roller_use": no + 1,
            },
        )
    if k == SESSION_EVENTS - 1:
        return Event(
            "session_ended",
            t,
            {
                "session_no": no + 1,
                "started_at": started,
                "ended_at": iso_utc(WALL0 + t),
                "duration_s": t - t0,
                "contact_s": round(0.85 * (t - t0), 2),
                "zone_s": {"light": 1.0, "ok": 400.0, "high": 80.0, "over": 9.0},
                "peak_n": 5.4,
                "mean_n": 2.3,
                "over_episodes": 24,
                "longest_over_s": 1.2,
                "sterile_at_start": True,
                "cycle_id": no + 1,
                "rest_interval_s": 600.0,
                "too_soon": False,
                "roller_id": 1,
                "roller_use": no + 1,
                "end_reason": "docked",
            },
        )
    if k % 2:
        return Event("over_pressure", t, {"force_n": 5.123, "limit_n": 4.5})
    return Event("over_pressure_cleared", t, {"duration_s": 0.48, "peak_n": 5.301})


def make_backlog(path: Path, n: int) -> tuple[float, list[bytes]]:
    """Commit ``n`` events through a sink (no bridge), close the store; returns the seconds
    it took and the envelopes the outbox will publish for them, byte for byte."""
    store = Store.open(path, DEVICE)
    sink = StoreSink(store, time.time)
    started = time.perf_counter()
    for i in range(n):
        sink(EmitEvent(backlog_event(i)))
    if not sink.flush(120.0) or not sink.close():
        raise BenchFailure("the backlog was not committed")
    elapsed = time.perf_counter() - started
    with open_readonly(path) as reader:
        payloads = [OutEvent.from_row(r).payload for r in reader.undelivered(0, n + 1)]
    if len(payloads) != n:
        raise BenchFailure(f"backlog holds {len(payloads)} events, not {n}")
    return elapsed, payloads


def drain_round(template: Path, workdir: Path, port: int, n: int, no: int) -> float:
    """Events/s from a fresh bridge's start until the broker acknowledged the whole backlog."""
    path = workdir / f"drain-{no}.db"
    shutil.copyfile(template, path)
    bridge, sink = open_bridge(path, port, f"dg-bench-drain-{no}")
    acked = [0]
    all_acked = threading.Event()

    def mark_delivered(seqs: Iterable[int]) -> None:
        # Called on the bridge thread as PUBACKs are processed. Waiting on this rather than in
        # drain() keeps the main thread from waking at every step of the bridge meanwhile.
        seqs = list(seqs)
        sink.mark_delivered(seqs)
        acked[0] += len(seqs)
        if acked[0] >= n:
            all_acked.set()

    bridge.bind(put_command=lambda _c: None, mark_delivered=mark_delivered)
    try:
        started = time.perf_counter()
        bridge.start()
        finished = all_acked.wait(300.0)
        elapsed = time.perf_counter() - started
        outbox = bridge.outbox
        if not finished or not bridge.drain(10.0) or outbox is None:
            raise BenchFailure(f"round {no}: {acked[0]} of {n} events acknowledged in 300 s")
        if outbox.delivered != n or outbox.published != n:
            raise BenchFailure(
                f"round {no}: outbox published {outbox.published} and saw {outbox.delivered} "
                f"acknowledged, of {n} events"
            )
        if not sink.flush(60.0):
            raise BenchFailure(f"round {no}: the delivery marks were not committed")
        with open_readonly(path) as reader:
            marked = int(
                reader.conn.execute("SELECT COUNT(*) FROM events WHERE delivered = 1").fetchone()[0]
            )
        if marked != n:
            raise BenchFailure(f"round {no}: the store marks {marked} of {n} events delivered")
    finally:
        bridge.close()
        sink.close()
    path.unlink()
    return n / elapsed


def raw_round(port: int, payloads: list[bytes], no: int) -> float:
    """Events/s of a bare paho client publishing every payload at once, to the last PUBACK."""
    n = len(payloads)
    done = threading.Event()
    counts = {"acked": 0, "refused": 0}

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, rc: ReasonCode, _p: Any = None) -> None:
        counts["acked"] += 1
        counts["refused"] += rc.is_failure
        if counts["acked"] == n:
            done.set()

    client, _ = connected_client(
        port, f"dg-bench-raw-{no}", max_inflight=MAX_INFLIGHT, on_publish=on_publish
    )
    topic = Topics(DEVICE).event
    try:
        started = time.perf_counter()
        for payload in payloads:
            client.publish(topic, payload, qos=1)
        if not done.wait(300.0):
            raise BenchFailure(f"round {no}: raw paho saw {counts['acked']} of {n} PUBACKs")
        elapsed = time.perf_counter() - started
    finally:
        close_client(client)
    if counts["refused"]:
        raise BenchFailure(f"round {no}: the broker refused {counts['refused']} raw messages")
    return n / elapsed


def bench_drain(workdir: Path, port: int, rounds: int, events: int = N_EVENTS) -> None:
    template = workdir / "backlog.db"
    fill_s, payloads = make_backlog(template, events)
    print(
        f"# backlog: {events} events committed through the sink in {fill_s:.1f} s, "
        f"envelopes {min(map(len, payloads))}-{max(map(len, payloads))} bytes",
        flush=True,
    )
    outbox: list[float] = []
    raw: list[float] = []
    for no in range(1, rounds + 1):
        # Alternate which goes first, so a drift in the machine's speed hits both alike.
        if no % 2:
            outbox.append(drain_round(template, workdir, port, events, no))
            raw.append(raw_round(port, payloads, no))
        else:
            raw.append(raw_round(port, payloads, no))
            outbox.append(drain_round(template, workdir, port, events, no))
        print(
            f"# round {no}: outbox {outbox[-1]:.0f} events/s, raw {raw[-1]:.0f} events/s, "
            f"ratio {outbox[-1] / raw[-1]:.3f}",
            flush=True,
        )
    ratios = [o / r for o, r in zip(outbox, raw, strict=True)]
    ratio = statistics.median(outbox) / statistics.median(raw)
    line("outbox_drain_events", events, "events")
    line("outbox_drain_all_marked_delivered", 1, "bool (every round, after sink.flush)")
    line("outbox_drain_rate", statistics.median(outbox), "events/s")
    line("raw_paho_qos1_rate", statistics.median(raw), "events/s")
    line("outbox_vs_raw_ratio", ratio, "fraction")
    line("outbox_vs_raw_ratio_round_min", min(ratios), "fraction")
    line("outbox_vs_raw_ratio_round_max", max(ratios), "fraction")
    line("outbox_vs_raw_rounds", rounds, "rounds")
    print(f"# target outbox/raw >= {TARGET_RATIO:g}: {verdict(ratio >= TARGET_RATIO)}", flush=True)


# -- latency --------------------------------------------------------------------------------


@contextlib.contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@contextlib.contextmanager
def busy_thread(duty: float) -> Iterator[None]:
    """A thread spinning in pure Python ``duty`` of every sample period, sleeping the rest
    (the HX711 sampler bit-banging a conversion, then waiting for the next)."""
    stop = threading.Event()

    def spin() -> None:
        due = time.perf_counter()
        x = 0
        while not stop.is_set():
            until = due + duty * PERIOD_S
            while time.perf_counter() < until:
                x += 1
            due += PERIOD_S
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.perf_counter()

    thread = threading.Thread(target=spin, name="busy-sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class Arrivals:
    """What the subscriber received: marker -> ms from emission to arrival."""

    wanted: int
    latency_ms: dict[int, float]
    done: threading.Event

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        arrived = time.perf_counter()
        data = json.loads(msg.payload)["data"]
        self.latency_ms[int(data["bench_k"])] = (arrived - float(data["bench_emit"])) * 1000.0
        if len(self.latency_ms) >= self.wanted:
            self.done.set()

    def wait_all(self, name: str, stalled_s: float) -> None:
        """Wait while events keep arriving: a slow pipeline shows as latency, a stall fails."""
        seen = -1
        while not self.done.wait(stalled_s):
            if len(self.latency_ms) == seen:
                raise BenchFailure(
                    f"{name}: the subscriber got {seen} of {self.wanted} events, "
                    f"none in the last {stalled_s:g} s"
                )
            seen = len(self.latency_ms)


def latency_run(workdir: Path, port: int, name: str, m: int, *, busy: float = 0.0) -> list[float]:
    """Latencies (ms) of ``m`` events paced at 80/s from the sink call to the subscriber."""
    path = workdir / f"latency-{name}.db"
    bridge, sink = open_bridge(path, port, f"dg-bench-{name}")
    topic = Topics(DEVICE).event
    arrivals = Arrivals(WARMUP_EVENTS, {}, threading.Event())
    subscribed = threading.Event()

    def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, rcs: list[ReasonCode], _p: Any) -> None:
        if not any(rc.is_failure for rc in rcs):
            subscribed.set()

    subscriber, _ = connected_client(
        port, f"dg-bench-sub-{name}", on_message=arrivals.on_message, on_subscribe=on_subscribe
    )
    try:
        subscriber.subscribe(topic, qos=1)
        bridge.start()
        if not subscribed.wait(10.0) or not bridge.drain(10.0):
            raise BenchFailure(f"{name}: subscriber or bridge not ready")
        with busy_thread(busy) if busy else contextlib.nullcontext():

            def emit(k: int) -> None:
                etype = "over_pressure" if k % 2 else "over_pressure_cleared"
                data = {"force_n": 5.123, "limit_n": 4.5, "bench_k": k}
                data["bench_emit"] = time.perf_counter()
                sink(EmitEvent(Event(etype, k * PERIOD_S, data)))

            for k in range(-WARMUP_EVENTS, 0):  # first statements, first messages: not timed
                emit(k)
            if not arrivals.done.wait(10.0):
                raise BenchFailure(f"{name}: the warm-up events never arrived")
            arrivals.latency_ms.clear()
            arrivals.done.clear()
            arrivals.wanted = m
            start = time.perf_counter() + PERIOD_S
            for k in range(m):
                delay = start + k * PERIOD_S - time.perf_counter()  # absolute, not cumulative
                if delay > 0:
                    time.sleep(delay)
                emit(k)
            arrivals.wait_all(name, stalled_s=10.0)
    finally:
        close_client(subscriber)
        bridge.close()
        sink.close()
    return [arrivals.latency_ms[k] for k in range(m)]


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def report_latency(suffix: str, latencies: list[float]) -> None:
    p99 = pct(latencies, 0.99)
    line(f"event_latency_median{suffix}", statistics.median(latencies), "ms")
    line(f"event_latency_p99{suffix}", p99, "ms")
    line(f"event_latency_max{suffix}", max(latencies), "ms")
    print(f"# target p99 <= {TARGET_P99_MS:g} ms: {verdict(p99 <= TARGET_P99_MS)}", flush=True)


def bench_latency(workdir: Path, port: int, m: int) -> None:
    print(
        f"# latency: {m} events at 80/s, sink call -> in-process subscriber on .../event "
        "(QoS 1). Without busy_thread in the name: an otherwise idle daemon process (store "
        "writer, bridge, paho threads; no sampler). busy_thread: one more thread spinning 90 % "
        "of each 12.5 ms, which the subscriber's own thread must also wait for",
        flush=True,
    )
    line("event_latency_events", m, "events per variant")
    with switch_interval(SWITCH_INTERVAL_S):
        report_latency("", latency_run(workdir, port, "daemon-switch", m))
    with switch_interval(DEFAULT_SWITCH_S):
        report_latency("_default_switch", latency_run(workdir, port, "default-switch", m))
    with switch_interval(SWITCH_INTERVAL_S):
        report_latency("_busy_thread", latency_run(workdir, port, "busy", m, busy=0.9))
    with switch_interval(DEFAULT_SWITCH_S):
        lat = latency_run(workdir, port, "busy-default", m, busy=0.9)
        report_latency("_busy_thread_default_switch", lat)


# -- main -----------------------------------------------------------------------------------


def header(version: str) -> None:
    cpu = "?"
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith(("model name", "Model")):
                cpu = row.split(":", 1)[1].strip()
                break
    print(
        f"# mosquitto {version} (own instance on loopback), paho-mqtt {paho.mqtt.__version__}, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    print(
        f"# machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {cpu}; "
        f"switch interval {SWITCH_INTERVAL_S * 1000:g} ms (the daemon's) unless named",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, under a minute")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: can every figure still be made?"
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the broker is stopped and the temp dir removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    header(mosquitto_version())
    try:
        with (
            tempfile.TemporaryDirectory(dir=args.dir, prefix="dg-bench-mqtt-") as tmp,
            Broker(Path(tmp)) as broker,
            switch_interval(SWITCH_INTERVAL_S),
        ):
            if args.smoke:  # a tenth of the backlog, once: the figures can still be made
                bench_drain(Path(tmp), broker.port, 1, N_EVENTS // 10)
            else:
                bench_drain(Path(tmp), broker.port, 3 if args.quick else 5)
            bench_latency(Path(tmp), broker.port, 30 if args.smoke else 300 if args.quick else 2000)
    except BenchFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
