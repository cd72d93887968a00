"""``dermaguard watch --once`` in a child process against a real broker, as a script runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from dermaguard.mqtt.schema_files import load_schema
from support.broker import Broker, BrokerFactory, Publisher, RecorderFactory
from support.ports import free_port

pytestmark = [pytest.mark.broker, pytest.mark.subprocess]

DEVICE = "bathroom"
BASE = f"dermaguard/{DEVICE}"


def env_for(state: Path) -> dict[str, str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("STATE_DIRECTORY", None)
    env.pop("DERMAGUARD_MQTT_PASSWORD", None)
    return env


def watch_cmd(port: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dermaguard",
        "watch",
        "--mqtt",
        f"127.0.0.1:{port}",
        "--device",
        DEVICE,
        "--once",
        *args,
    ]


def state(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "v": 1,
        "ts": "2026-11-25T10:00:00.123Z",
        "state": "in_use",
        "zone": "high",
        "force_n": 3.456,
        "sterile": False,
        "sterile_until": None,
        "uv_on": False,
        "lid_closed": False,
        "docked": False,
        "case": "open",
        "remaining_s": None,
        "session_no": 12,
        "roller_id": 3,
        "roller_uses": 5,
        "fault": None,
        "alarm": None,
        "silenced": False,
    }
    out.update(changes)
    return out


SESSION_LAST = {
    "v": 1,
    "session_no": 11,
    "started_at": "2026-11-23T09:10:30.312Z",
    "ended_at": "2026-11-23T09:11:11.312Z",
    "duration_s": 41.0,
    "contact_s": 33.79,
    "zone_s": {"light": 0.75, "ok": 22.05, "high": 3.47, "over": 7.51},
    "peak_n": 5.997,
    "mean_n": 2.857,
    "over_episodes": 2,
    "longest_over_s": 5.48,
    "sterile_at_start": True,
    "cycle_id": 1,
    "rest_interval_s": None,
    "too_soon": False,
    "roller_id": 3,
    "roller_use": 4,
    "end_reason": "docked",
    "technique": None,  # a session from before passes were measured
}


def event(etype: str, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1,
        "id": str(uuid.uuid4()),
        "seq": seq,
        "device": DEVICE,
        "type": etype,
        "ts": f"2026-11-25T10:00:{seq:02d}.000Z",
        "data": data,
    }


def checked(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` after checking it against the contract's schema ``kind``."""
    errors = [e.message for e in Draft202012Validator(load_schema(kind)).iter_errors(payload)]
    assert errors == [], (kind, payload)
    return payload


def wait_for_subscription(broker: Broker, topic: str, proc: subprocess.Popen[str]) -> str:
    """The watcher's client id, once the broker logged its subscription to ``topic``."""
    deadline = time.monotonic() + 20
    pattern = re.compile(rf"(dermaguard-watch-[0-9a-f]+) \d {re.escape(topic)}$", re.M)
    while time.monotonic() < deadline:
        found = pattern.search(broker.log_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"the watcher never subscribed to {topic}\n{out}\n{err}")


def test_once_shows_retained_state_last_session_and_live_events(
    broker: Broker, tmp_path: Path, recorder_factory: RecorderFactory
) -> None:
    everything = recorder_factory(broker, "#")
    published: set[tuple[str, bytes]] = set()
    with Publisher(broker) as pub:

        def send(topic: str, payload: Any, *, retain: bool = False) -> None:
            outcome = pub.publish(topic, payload, retain=retain)
            assert not outcome.is_failure
            published.add((topic, sent_bytes(payload)))

        send(f"{BASE}/availability", "online", retain=True)
        send(f"{BASE}/session/last", checked("session_last", SESSION_LAST), retain=True)
        proc = subprocess.Popen(
            watch_cmd(broker.port, "--timeout", "30"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(tmp_path),
        )
        client_id = wait_for_subscription(broker, f"{BASE}/state", proc)
        # Events are not retained: the watcher sees those sent after it subscribed.
        over = checked("event", event("over_pressure", 41, {"force_n": 4.62, "limit_n": 4.5}))
        send(f"{BASE}/event", event("session_started", 40, {"session_no": 12, "roller_use": 5}))
        send(f"{BASE}/event", over)
        send(f"{BASE}/event", over)  # a redelivery: same id
        send(
            f"{BASE}/event",
            event("over_pressure_cleared", 42, {"duration_s": 1.4, "peak_n": 5.1}),
        )
        send(f"{BASE}/state", checked("state", state()), retain=True)
        out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert err == ""
    assert "Traceback" not in out
    assert f"127.0.0.1:{broker.port} connected" in out
    assert "device online" in out
    assert "3.46 N  high" in out
    assert "IN USE: session 12" in out
    assert "3, 5 use(s)" in out
    assert "#11, " in out and "41 s, 34 s in contact" in out
    assert "peak 6.00 N, mean 2.86 N" in out
    assert "2 episode(s), longest 5.5 s" in out
    assert out.count("ALARM over-pressure: 4.62 N before smoothing (limit 4.50 N)") == 1
    assert "session 12 started (roller use 5)" in out
    assert "alarm cleared: over-pressure lasted 1.4 s, peak 5.10 N" in out
    assert "malformed" not in out
    # Read-only: the broker got nothing from the watcher, which had its own clean session.
    time.sleep(0.2)
    from_others = {(m.topic, m.payload) for m in everything.messages()} - published
    assert from_others == set()
    assert re.fullmatch(r"dermaguard-watch-[0-9a-f]{8}", client_id)
    assert re.search(rf"New client connected .* as {client_id} \(p5, c1", broker.log_text())


def sent_bytes(payload: Any) -> bytes:
    """The bytes the Publisher sends for ``payload`` (dicts as JSON)."""
    if isinstance(payload, bytes):
        return payload
    return (payload if isinstance(payload, str) else json.dumps(payload)).encode()


def test_once_with_everything_retained_returns_at_once(broker: Broker, tmp_path: Path) -> None:
    with Publisher(broker) as pub:
        pub.publish(f"{BASE}/availability", "offline", retain=True)
        sterilizing = state(
            state="sterilizing",
            zone=None,
            force_n=None,
            uv_on=True,
            lid_closed=True,
            docked=True,
            case="sterilizing",
            remaining_s=312.0,
            session_no=None,
        )
        pub.publish(f"{BASE}/state", checked("state", sterilizing), retain=True)
    started = time.monotonic()
    result = subprocess.run(
        watch_cmd(broker.port, "--timeout", "30"),
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    out = result.stdout
    assert "device OFFLINE" in out
    assert "UNKNOWN" in out and "0.00 N" not in out
    assert "sterilizing" in out and "ON" in out
    assert "no session yet" in out
    assert "none while --once waited" in out


def test_once_without_a_state_says_so_and_exits_1(broker: Broker, tmp_path: Path) -> None:
    result = subprocess.run(
        watch_cmd(broker.port, "--timeout", "1"),
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "device no data yet" in result.stdout
    assert f"no state on {BASE}/state within 1 s" in result.stderr


def test_once_with_no_broker_names_the_address_and_exits_1(tmp_path: Path) -> None:
    port = free_port()  # nobody listens on it
    started = time.monotonic()
    result = subprocess.run(
        watch_cmd(port, "--timeout", "1"),
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1  # the machine (no broker), not the call
    assert f"cannot reach the MQTT broker at 127.0.0.1:{port} within 1 s" in result.stderr
    assert "connection refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert elapsed < 10


def test_once_speaks_mqtt_3_1_1_when_the_config_says_so(broker: Broker, tmp_path: Path) -> None:
    config = tmp_path / "laptop.yaml"
    config.write_text(f'device_id: {DEVICE}\nmqtt:\n  version: "3.1.1"\n', encoding="utf-8")
    with Publisher(broker) as pub:
        pub.publish(f"{BASE}/state", checked("state", state()), retain=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dermaguard",
            "watch",
            "--config",
            str(config),
            "--mqtt",
            f"127.0.0.1:{broker.port}",
            "--once",
        ],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "3.46 N  high" in result.stdout
    assert re.search(r"as dermaguard-watch-[0-9a-f]{8} \(p2, c1", broker.log_text())


def test_once_refused_by_the_broker_says_so_and_exits_2(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    locked = broker_factory(users={"device": "s3cret"})
    result = subprocess.run(
        watch_cmd(locked.port, "--timeout", "20"),
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"the MQTT broker at 127.0.0.1:{locked.port} refused the connection" in result.stderr
    assert "Not authorized" in result.stderr
    assert "Traceback" not in result.stderr
