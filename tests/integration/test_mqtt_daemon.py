"""The daemon against a real Mosquitto the test owns: the contract, outages, crashes, logins.

Every test runs ``dermaguard run --simulate`` in a child process, as a person would, with an
independent subscriber (a persistent MQTT 5 session, so it misses nothing while a broker is
restarted) and checks what it got against the daemon's own event log.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support import daemon
from support.broker import Broker, BrokerFactory, Publisher, Received, Recorder, fetch_retained
from support.daemon import DEVICE
from support.ports import free_port

pytestmark = [pytest.mark.subprocess, pytest.mark.broker]

BASE = f"dermaguard/{DEVICE}"
EVENT = f"{BASE}/event"


def events_seen(rec: Recorder) -> list[dict[str, Any]]:
    """Events in arrival order, de-duplicated by id as the contract tells consumers to."""
    seen: set[str] = set()
    out = []
    for body in rec.json(EVENT):
        if body["id"] not in seen:
            seen.add(body["id"])
            out.append(body)
    return out


def assert_all_delivered_once_in_order(rec: Recorder, stored: list[dict[str, Any]]) -> None:
    got = events_seen(rec)
    assert [e["id"] for e in got] == [e["id"] for e in stored]
    assert [e["seq"] for e in got] == sorted(e["seq"] for e in got)
    assert [e["type"] for e in got] == [e["type"] for e in stored]


def wait_for_all(rec: Recorder, stored: list[dict[str, Any]]) -> None:
    """Until the subscriber holds as many distinct events as the log (duplicates aside)."""
    rec.wait_for(lambda m: len({x.json()["id"] for x in m if x.topic == EVENT}) >= len(stored))


def wait_for_type(rec: Recorder, etype: str, timeout: float = 60) -> None:
    rec.wait_for(
        lambda m: any(x.topic == EVENT and x.json()["type"] == etype for x in m), timeout=timeout
    )


def recorder(broker: Broker) -> Recorder:
    return Recorder(broker, [f"{BASE}/#", "homeassistant/#"])


def test_a_session_is_published_whole_retained_and_to_the_schemas(
    broker: Broker, tmp_path: Path
) -> None:
    with recorder(broker) as rec:
        proc = daemon.start(tmp_path, "over_pressure", port=broker.port, speed=20)
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err
        stored = daemon.stored_events(tmp_path)
        types = [e["type"] for e in stored]
        assert types[0] == "daemon_started" and types[-1] == "daemon_stopping"
        assert types.count("over_pressure") == 2 and "session_ended" in types
        wait_for_all(rec, stored)
        assert_all_delivered_once_in_order(rec, stored)
        # The clean shutdown waited for the acknowledgements and recorded them.
        assert all(e["delivered"] for e in daemon.stored_events(tmp_path))
        assert rec.messages(f"{BASE}/force"), "live force while in use"
        assert daemon.assert_valid_payloads(rec.messages()) > len(stored)
    retained = {m.topic: m for m in fetch_retained(broker, "#")}
    assert retained[f"{BASE}/availability"].payload == b"offline"
    state = retained[f"{BASE}/state"].json()
    assert state["state"] == "idle" and state["roller_uses"] == 1
    last = retained[f"{BASE}/session/last"].json()
    ended = [e for e in stored if e["type"] == "session_ended"][-1]
    assert last == {"v": 1, **ended["data"]}
    discovery = retained[f"homeassistant/device/{DEVICE}/config"].json()
    assert discovery["cmps"] and discovery["dev"]["ids"]
    daemon.assert_valid_payloads(list(retained.values()))


def test_broker_stopped_mid_session_then_every_event_arrives_once_in_order(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = daemon.pushes_scenario(tmp_path / "pushes.yaml", duration=90)
    with recorder(broker) as rec:
        proc = daemon.start(tmp_path / "state", scenario, port=broker.port, speed=6)
        wait_for_type(rec, "over_pressure")
        connects = rec.connects
        broker.stop()
        before = len(daemon.stored_events(tmp_path / "state"))
        # While the broker is away the session goes on and its events are stored.
        daemon.wait_until(
            lambda: len(daemon.stored_events(tmp_path / "state")) >= before + 4,
            timeout=60,
            what="events stored during the outage",
        )
        broker.start()
        rec.wait_connected(count=connects + 1, timeout=30)
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err
        assert "lost the connection" in err
        stored = daemon.stored_events(tmp_path / "state")
        wait_for_all(rec, stored)
        assert_all_delivered_once_in_order(rec, stored)


def test_events_left_undelivered_by_a_sigkill_arrive_after_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = daemon.pushes_scenario(tmp_path / "pushes.yaml", duration=60)
    with recorder(broker) as rec:
        connects = rec.connects
        broker.stop()  # the daemon runs with no broker: everything stays in the outbox
        proc = daemon.start(tmp_path / "state", scenario, port=broker.port, speed=4)
        daemon.wait_until(
            lambda: (
                sum(e["type"] == "over_pressure" for e in daemon.stored_events(tmp_path / "state"))
                >= 2
            ),
            timeout=60,
            what="over-pressure events stored",
        )
        daemon.kill(proc)
        first_run = daemon.stored_events(tmp_path / "state")
        assert first_run and not any(e["delivered"] for e in first_run)
        broker.start()
        rec.wait_connected(count=connects + 1, timeout=30)
        proc = daemon.start(tmp_path / "state", "gentle_session", port=broker.port, speed=20)
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err
        stored = daemon.stored_events(tmp_path / "state")
        assert [e["id"] for e in stored[: len(first_run)]] == [e["id"] for e in first_run]
        wait_for_all(rec, stored)
        assert_all_delivered_once_in_order(rec, stored)


def test_refused_credentials_are_reported_clearly_and_retried(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = broker_factory(users={"dermaguard": "right-password"})
    config = tmp_path / "dermaguard.yaml"
    config.write_text("mqtt:\n  username: dermaguard\n")
    proc = daemon.start(
        tmp_path / "state",
        "gentle_session",
        port=broker.port,
        speed=1,
        args=("--config", str(config)),
        env={"DERMAGUARD_MQTT_PASSWORD": "wrong-password"},
    )
    daemon.wait_until(
        lambda: broker.log_text().count("not authorised") >= 2 or proc.poll() is not None,
        timeout=60,
        what="a second login attempt",
    )
    proc.send_signal(signal.SIGTERM)  # a clean stop works with no broker to say goodbye to
    rc, _, err = daemon.finish(proc)
    assert rc == 0, err
    assert "refused the connection" in err and "check mqtt.username and the password" in err
    assert err.count("refused the connection") == 1  # said once, not at every retry
    assert "wrong-password" not in err
    assert broker.log_text().count("not authorised") >= 2  # it kept trying


def test_commands_are_answered_and_a_bad_one_never_stops_the_daemon(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = daemon.pushes_scenario(tmp_path / "pushes.yaml", duration=60)
    with recorder(broker) as rec:
        proc = daemon.start(tmp_path / "state", scenario, port=broker.port, speed=3)
        rec.wait_for(lambda m: any(x.topic == f"{BASE}/availability" for x in m), timeout=60)
        with Publisher(broker) as pub:
            pub.publish(f"{BASE}/cmd/ping", {"request_id": "p-1"})
            pub.publish(f"{BASE}/cmd/launch", {"request_id": "bad-name"})
            pub.publish(f"{BASE}/cmd/tare", b"\xff not json")
            pub.publish(f"{BASE}/cmd/silence", {"request_id": "s-1", "duration_s": 30})
            pub.publish(f"{BASE}/cmd/ping", {"request_id": "p-2"})

        def answered(messages: list[Received]) -> bool:
            ids = {
                x.json()["data"].get("request_id")
                for x in messages
                if x.topic == EVENT and x.json()["type"] == "command_result"
            }
            return {"p-1", "bad-name", "s-1", "p-2"} <= ids

        got = rec.wait_for(answered, timeout=60)
        results = {
            x.json()["data"].get("request_id", "none"): x.json()["data"]
            for x in got
            if x.topic == EVENT and x.json()["type"] == "command_result"
        }
        assert results["p-1"]["ok"] is True and results["p-2"]["ok"] is True
        assert results["bad-name"]["ok"] is False
        assert "unknown command 'launch'" in results["bad-name"]["error"]
        assert results["none"]["ok"] is False and "UTF-8" in results["none"]["error"]
        # A silence mutes the alarm sounding when it comes, if any (docs/MQTT.md).
        silence = results["s-1"]
        assert silence["command"] == "silence" and silence["request_id"] == "s-1"
        if silence["ok"]:
            assert silence["duration_s"] == 30.0 and silence["alarm"]
        else:
            assert silence["error"].startswith("nothing to silence")
        rc, _, err = daemon.stop(proc)  # answered: no need to play the rest of the minute
        assert rc == 0, err
        daemon.assert_valid_payloads(rec.messages())


def test_events_the_broker_refuses_by_acl_are_not_counted_as_delivered(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    # The daemon may publish everything but events: under MQTT 5 the broker answers each
    # event with PUBACK "Not authorized", which must not mark it delivered.
    acl = "\n".join(
        [
            "user dermaguard",
            f"topic write {BASE}/availability",
            f"topic write {BASE}/state",
            f"topic write {BASE}/force",
            f"topic write {BASE}/session/last",
            "topic write homeassistant/#",
            f"topic read {BASE}/cmd/#",
            "topic read homeassistant/status",
        ]
    )
    broker = broker_factory(users={"dermaguard": "pw"}, acl=acl)
    config = tmp_path / "dermaguard.yaml"
    config.write_text("mqtt:\n  username: dermaguard\n")
    proc = daemon.start(
        tmp_path / "state",
        "over_pressure",
        port=broker.port,
        speed=20,
        args=("--config", str(config)),
        env={"DERMAGUARD_MQTT_PASSWORD": "pw"},
    )
    rc, _, err = daemon.finish(proc)
    assert rc == 0, err
    stored = daemon.stored_events(tmp_path / "state")
    assert stored and not any(e["delivered"] for e in stored)
    assert "the broker refused event" in err and "Not authorized" in err
    assert err.count("the broker refused event") == 1  # once per reason, not per event


def make_tls_files(d: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-subj", "/CN=dg test CA", "-keyout", "ca.key", "-out", "ca.pem"),
    )
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
        *("-keyout", "server.key", "-out", "server.csr"),
    )
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile", "san.cnf"),
    )
    return d / "ca.pem", d / "server.pem", d / "server.key"


def test_tls_to_the_broker_with_the_configured_ca(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = make_tls_files(certs)
    tls_port = free_port()
    broker = broker_factory(
        extra_conf=f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}"
    )
    config = tmp_path / "dermaguard.yaml"
    config.write_text(
        f"mqtt:\n  host: 127.0.0.1\n  port: {tls_port}\n  tls:\n    enabled: true\n"
        f"    ca_file: {ca}\n"
    )
    with recorder(broker) as rec:  # plain TCP on the broker's first listener
        proc = daemon.start_with_config(tmp_path / "state", "unsterile_use", config, speed=10)
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err
        stored = daemon.stored_events(tmp_path / "state")
        wait_for_all(rec, stored)
        assert_all_delivered_once_in_order(rec, stored)


def test_mqtt_3_1_1_is_selectable(broker: Broker, tmp_path: Path) -> None:
    config = tmp_path / "dermaguard.yaml"
    config.write_text(f'mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  version: "3.1.1"\n')
    with recorder(broker) as rec:
        proc = daemon.start_with_config(tmp_path / "state", "unsterile_use", config, speed=10)
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err
        stored = daemon.stored_events(tmp_path / "state")
        wait_for_all(rec, stored)
        assert_all_delivered_once_in_order(rec, stored)
    assert f"as dermaguard-{DEVICE} (p2" in broker.log_text()  # mosquitto: p2 = 3.1.1, p5 = 5


def test_discovery_is_sent_again_when_home_assistant_comes_online(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = daemon.pushes_scenario(tmp_path / "pushes.yaml", duration=60)
    discovery = f"homeassistant/device/{DEVICE}/config"
    with recorder(broker) as rec:
        proc = daemon.start(tmp_path / "state", scenario, port=broker.port, speed=2)
        rec.wait_for(lambda m: any(x.topic == discovery for x in m), timeout=60)
        with Publisher(broker) as pub:
            pub.publish("homeassistant/status", "online")
        rec.wait_for(lambda m: sum(x.topic == discovery for x in m) >= 2, timeout=30)
        proc.send_signal(signal.SIGTERM)
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err


def test_sigterm_mid_session_closes_it_and_publishes_daemon_stopping(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = daemon.pushes_scenario(tmp_path / "pushes.yaml", duration=120)
    with recorder(broker) as rec:
        proc = daemon.start(tmp_path / "state", scenario, port=broker.port, speed=3)
        wait_for_type(rec, "session_started")
        proc.send_signal(signal.SIGTERM)
        rc, _, err = daemon.finish(proc)
        assert rc == 0, err
        stored = daemon.stored_events(tmp_path / "state")
        # Everything was delivered before the exit: the subscriber already has it all.
        assert all(e["delivered"] for e in stored)
        wait_for_all(rec, stored)
        got = events_seen(rec)
        assert [e["type"] for e in got][-2:] == ["session_ended", "daemon_stopping"]
        assert got[-2]["data"]["end_reason"] == "shutdown"
    retained = {m.topic: m for m in fetch_retained(broker, f"{BASE}/#")}
    assert retained[f"{BASE}/availability"].payload == b"offline"
    assert retained[f"{BASE}/state"].json()["state"] == "idle"
    assert retained[f"{BASE}/session/last"].json()["end_reason"] == "shutdown"


#: Nothing happens: the roller rests in its open case, so a command is all that can act.
IDLE = """
name: idle
description: the roller rests in its dock, nothing touches it
duration_s: 600
initial: {lid: open, dock: in}
force:
  - {t: 0, n: 0}
  - {t: 600, n: 0}
"""


def test_a_retained_command_is_refused_at_every_start_and_left_on_the_broker(
    broker: Broker, tmp_path: Path
) -> None:
    """docs/MQTT.md: a command acts only when it is fresh. A retained ``new_roller`` would
    otherwise renew the roller at every start, silently resetting its use count."""
    topic = f"{BASE}/cmd/new_roller"
    with Publisher(broker) as pub:
        pub.publish(topic, {"request_id": "old"}, retain=True)
    scenario = daemon.write_scenario(tmp_path / "idle.yaml", IDLE)
    state = tmp_path / "state"
    for start in (1, 2):
        with recorder(broker) as rec:
            proc = daemon.start(state, scenario, port=broker.port, speed=1)
            try:

                def answered(messages: list[Received]) -> bool:
                    return any(
                        x.topic == EVENT
                        and x.json()["type"] == "command_result"
                        and x.json()["data"].get("request_id") == "old"
                        for x in messages
                    )

                got = rec.wait_for(answered, timeout=60)
            finally:
                rc, _, err = daemon.stop(proc)
            assert rc == 0, err
        answers = [
            x.json()["data"]
            for x in got
            if x.topic == EVENT and x.json()["type"] == "command_result"
        ]
        assert len(answers) == 1, (start, answers)
        assert answers[0]["ok"] is False and "retained" in answers[0]["error"], answers
        assert answers[0]["command"] == "new_roller"
        stored = [e["type"] for e in daemon.stored_events(state)]
        assert "new_roller" not in stored, (start, stored)
        assert stored.count("command_result") == start, (start, stored)
    left = fetch_retained(broker, topic)
    assert [(m.topic, m.json()) for m in left] == [(topic, {"request_id": "old"})]
