"""The soak benchmark, small: six simulated minutes of routines with the broker restarted twice.

``bench/soak.py`` runs the real daemon in simulation against a Mosquitto of its own; here it runs
in a child process exactly as a person runs it, and its printed figures are checked: every event
stored is marked delivered, every routine left one completed session, the daemon reconnected
after each broker restart, open file descriptors and memory stay flat.

How honestly the host kept 80 samples per virtual second is the benchmark's business (it exits 3
when it did not); here ``--allow-host-lag`` keeps that out of the verdict and only a gross loss
fails, so a busy CI machine does not fail a test about leaks and lost events.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dermaguard.core.events import Event
from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import Topics
from dermaguard.store import Store, StoredEvent, open_readonly
from support.fake_paho import FakeClient

pytestmark = [pytest.mark.faults, pytest.mark.broker, pytest.mark.subprocess, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak.py"
FIGURE = re.compile(r"^(?P<name>[a-z_]+): (?P<value>\S+) (?P<unit>\S+)$")

MINUTES = 6
FLAP_EVERY_MIN = 2
#: 6 simulated minutes in about 30 s of real time. ``bench/soak.py --find-speed`` put the
#: ceiling of the 2-CPU host at about 45x (virtual time cannot run faster) and full hours stayed
#: honest at 20x and 30x; 12x keeps two broker restarts inside the run (none comes in the last
#: 8 real seconds) and leaves room for a busy machine.
SPEED = 12


def figures(stdout: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for text in stdout.splitlines():
        match = FIGURE.match(text)
        if match:
            out[match["name"]] = float(match["value"])
    return out


def drain_returns_before_the_last_ack() -> bool:
    """BUG 9: ``MqttBridge.drain()`` may return True while the last event is still being
    published: it trusts ``_idle``, which the bridge thread refreshes only at the end of the step
    that took the event. The daemon then closes the bridge and the event stays unmarked (sent
    again at the next start). Reproduced deterministically with a slow client."""
    with tempfile.TemporaryDirectory(prefix="dg-drain-") as tmp:
        db = Path(tmp) / "dg.db"
        store = Store.open(db, "dev")
        client = FakeClient(publish_s=0.2)  # a busy host; nothing is ever acknowledged
        settings = MqttSettings("x", 1, "5", "c", 30, Topics("dev"), discovery=False)
        bridge = MqttBridge(
            settings,
            open_events=lambda: open_readonly(db),
            device_name="d",
            sw_version="0",
            client=client,  # type: ignore[arg-type]
            put_command=lambda _c: None,
            mark_delivered=lambda _s: None,
        )
        try:
            bridge.start()
            client.connected()
            time.sleep(0.6)  # connected, announced (one slow publish), idle
            stored = StoredEvent(1, "00000000-0000-4000-8000-000000000001", "2026-01-01T00:00:00Z")
            bridge.on_stored(Event("daemon_stopping", 0.0, {}), stored)
            time.sleep(0.05)  # the bridge has taken the event and is publishing it
            return bridge.drain(0.5)  # never acknowledged: must be False
        finally:
            bridge.close(timeout=2.0)
            store.close()


def test_drain_waits_for_the_last_acknowledgement() -> None:
    # The soak found drain() returning while the bridge was still publishing the last events,
    # so the daemon closed with them unacknowledged.
    assert not drain_returns_before_the_last_ack()


def test_a_short_soak_delivers_every_event_keeps_every_session_and_leaks_no_fds(
    tmp_path: Path,
) -> None:
    work = tmp_path / "soak"
    proc = subprocess.run(
        [
            *(sys.executable, str(SOAK), "--minutes", str(MINUTES), "--speed", str(SPEED)),
            *("--flap-every-min", str(FLAP_EVERY_MIN), "--sample-s", "0.5"),
            *("--allow-host-lag", "--keep", str(work)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    got = figures(proc.stdout)
    context = f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    daemon_log = work / "daemon.err"
    if proc.returncode != 0 and daemon_log.exists():
        context += "\n--- daemon stderr ---\n" + daemon_log.read_text(errors="replace")[-3000:]
    assert proc.returncode == 0, context
    assert got["events_undelivered"] == 0, context
    assert got["events_delivered"] == got["events_stored"], context
    assert got["simulated_minutes"] == MINUTES
    assert got["events_stored"] > 0, context
    # One completed session per routine; the alarm fired for the scenario's pushes.
    assert got["sessions_stored"] == got["sessions_expected"] == 2, context
    assert got["over_pressure_events"] >= 1, context
    # The broker went away and came back, and the daemon reconnected each time.
    assert got["broker_flaps"] == MINUTES // FLAP_EVERY_MIN - 1, context
    assert got["mqtt_reconnects"] >= got["broker_flaps"], context
    # Nothing leaks: open descriptors stable while connected, memory flat within a few MB.
    assert got["fds_growth"] <= 0, context
    # While connected the count moves only by the read-only SQLite connection the outbox opens
    # to catch up after a reconnect (the database, its -wal and -shm: 3 descriptors).
    assert got["fds_connected_range"] <= 3, context
    assert got["rss_growth"] < 10, context
    # The sampler ran. (How many reads a busy host lets the emulated HX711 keep is the
    # benchmark's figure, not a verdict here.)
    assert got["samples_per_virtual_s"] > 0, context
