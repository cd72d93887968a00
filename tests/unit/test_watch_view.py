"""``dermaguard watch`` without a broker: the model ingests payloads, the view shows them.

Every sample payload below is checked against the contract's JSON Schemas first, so the view is
tested on what a device really sends; the assertions read the rendered text as a person would.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from rich.console import Console

from dermaguard.config.load import ZonesConfig
from dermaguard.mqtt.decode import event_summary
from dermaguard.mqtt.schema_files import load_schema
from dermaguard.mqtt.topics import Topics
from dermaguard.ui.watch.model import WatchModel
from dermaguard.ui.watch.view import render

TOPICS = Topics("bathroom")
T0 = 1000.0  # monotonic seconds at which the first message arrives
TS = "2026-11-25T10:00:00.123Z"


def state(**changes: Any) -> dict[str, Any]:
    """A ``…/state`` payload as the daemon publishes it while in use (the zone follows)."""
    out: dict[str, Any] = {
        "v": 1,
        "ts": TS,
        "state": "in_use",
        "zone": "ok",
        "force_n": 2.345,
        "sterile": False,
        "sterile_until": None,
        "uv_on": False,
        "lid_closed": False,
        "docked": False,
        "case": "open",
        "remaining_s": None,
        "session_no": 7,
        "roller_id": 2,
        "roller_uses": 4,
        "fault": None,
        "alarm": None,
        "silenced": False,
    }
    out.update(changes)
    return out


def sterilizing(remaining_s: float = 60.0) -> dict[str, Any]:
    return state(
        state="sterilizing",
        zone="none",
        force_n=0.001,
        uv_on=True,
        lid_closed=True,
        docked=True,
        case="sterilizing",
        remaining_s=remaining_s,
        session_no=None,
    )


def force(force_n: float | None, zone: str | None) -> dict[str, Any]:
    return {"v": 1, "t": 1_795_655_433.575, "force_n": force_n, "zone": zone}


def event(
    etype: str, data: dict[str, Any], *, seq: int = 1, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "v": 1,
        "id": event_id or str(uuid.uuid4()),
        "seq": seq,
        "device": TOPICS.device_id,
        "type": etype,
        "ts": f"2026-11-25T10:00:{seq:02d}.000Z",
        "data": data,
    }


def session_last(**changes: Any) -> dict[str, Any]:
    """A real summary (from a simulated over-pressure session)."""
    out: dict[str, Any] = {
        "v": 1,
        "session_no": 6,
        "started_at": "2026-11-25T09:10:30.312Z",
        "ended_at": "2026-11-25T09:11:11.312Z",
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
        "roller_id": 2,
        "roller_use": 4,
        "end_reason": "docked",
        "technique": None,  # a session from before passes were measured
    }
    out.update(changes)
    return out


SCHEMA_OF = {"state": "state", "force": "force", "event": "event", "session_last": "session_last"}


def valid(kind: str, payload: dict[str, Any]) -> bytes:
    """The payload as bytes, after checking it against the contract's schema."""
    errors = [e.message for e in Draft202012Validator(load_schema(kind)).iter_errors(payload)]
    assert errors == [], (kind, payload)
    return json.dumps(payload).encode()


def model() -> WatchModel:
    m = WatchModel(TOPICS, zones=ZonesConfig(), address="broker.lan:1883")
    m.set_link("connected")
    return m


def feed(m: WatchModel, topic: str, kind: str, payload: dict[str, Any], now: float = T0) -> bool:
    return m.ingest(topic, valid(kind, payload), now)


def shown(m: WatchModel, now: float = T0) -> str:
    console = Console(record=True, width=100, color_system=None, file=io.StringIO())
    console.print(render(m, now, tz=UTC))
    return console.export_text()


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


# --- the samples are the contract ------------------------------------------------------------


def test_every_sample_payload_fits_the_contract() -> None:
    valid("state", state())
    valid("state", state(force_n=None, zone=None, fault="not_ready", alarm="sensor_fault"))
    valid("state", sterilizing())
    valid("force", force(1.5, "ok"))
    valid("force", force(None, None))
    valid("session_last", session_last())
    valid("event", event("over_pressure", {"force_n": 4.6, "limit_n": 4.5}))
    valid("event", event("command_result", {"command": "ping", "ok": True}))


# --- force ---------------------------------------------------------------------------------


def test_force_and_zone_are_shown_from_the_state() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state(force_n=2.345, zone="ok"))
    text = shown(m)
    line = line_with(text, "Force")
    assert "2.35 N" in line and "ok" in line
    # The header gives the device's time of the state: a retained one may be old.
    assert "dermaguard/bathroom  broker.lan:1883 connected" in text
    assert "state of 10:00:00" in text


def test_the_live_force_topic_updates_the_gauge_after_the_state() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state(force_n=2.0, zone="ok"))
    feed(m, TOPICS.force, "force", force(3.41, "high"), now=T0 + 0.1)
    text = shown(m, T0 + 0.2)
    assert "3.41 N  high" in line_with(text, "Force")
    # The bar is filled to the force: 3.41 N of 5.85 N on a 72-cell gauge is 42 cells.
    bar = text.splitlines()[text.splitlines().index(line_with(text, "Force")) + 1]
    assert bar.count("█") == round(3.41 / (4.5 * 1.3) * 72)


def test_over_pressure_is_shown_as_over_and_as_the_alarm() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state(force_n=5.2, zone="over", alarm="over_pressure"))
    text = shown(m)
    assert "5.20 N  OVER" in line_with(text, "Force")
    assert "OVER-PRESSURE" in line_with(text, "Alarm")


def test_over_pressure_flashes_but_ok_does_not() -> None:
    def force_line(m: WatchModel, now: float) -> str:
        console = Console(record=True, width=100, color_system="truecolor", file=io.StringIO())
        console.print(render(m, now, tz=UTC))
        return line_with(console.export_text(styles=True), "Force")

    over, ok = model(), model()
    feed(over, TOPICS.state, "state", state(force_n=5.2, zone="over", alarm="over_pressure"))
    feed(ok, TOPICS.state, "state", state(force_n=2.0, zone="ok"))
    # A quarter of a second apart: the 2 Hz flash of the device LED.
    assert force_line(over, T0) != force_line(over, T0 + 0.25)
    assert force_line(over, T0) == force_line(over, T0 + 0.5)
    assert force_line(ok, T0) == force_line(ok, T0 + 0.25)


def test_an_unknown_force_is_shown_as_unknown_never_as_zero() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state(force_n=2.0, zone="ok"))
    feed(m, TOPICS.force, "force", force(None, None), now=T0 + 0.1)
    text = shown(m, T0 + 0.1)
    line = line_with(text, "Force")
    assert "UNKNOWN" in line
    assert "0.00 N" not in line and "2.00 N" not in line
    assert "█" not in text


def test_a_sensor_fault_state_shows_unknown_force_and_the_fault() -> None:
    m = model()
    payload = state(force_n=None, zone=None, fault="not_ready", alarm="sensor_fault")
    feed(m, TOPICS.state, "state", payload)
    text = shown(m)
    assert "UNKNOWN" in line_with(text, "Force")
    alarm = line_with(text, "Alarm")
    assert "SENSOR FAULT" in alarm and "not_ready" in alarm


def test_the_gauge_marks_the_configured_thresholds() -> None:
    m = WatchModel(TOPICS, zones=ZonesConfig(contact_n=0.5, ok_n=1.5, high_n=3.5, over_n=6.0))
    feed(m, TOPICS.state, "state", state(force_n=2.0, zone="ok"))
    scale = line_with(shown(m), "0.5")
    for tick in ("0.5", "1.5", "3.5", "6.0", "7.8 N"):
        assert tick in scale


# --- case ----------------------------------------------------------------------------------


def test_the_sterilization_countdown_runs_locally_between_states() -> None:
    m = model()
    feed(m, TOPICS.state, "state", sterilizing(60.0))
    assert "1:00 left" in line_with(shown(m, T0), "Cycle")
    assert "0:48 left" in line_with(shown(m, T0 + 12.3), "Cycle")
    assert "0:00 left" in line_with(shown(m, T0 + 90), "Cycle")
    # The next state from the device takes over from the local count.
    feed(m, TOPICS.state, "state", sterilizing(30.0), now=T0 + 100)
    assert "0:30 left" in line_with(shown(m, T0 + 100), "Cycle")
    text = shown(m, T0 + 100)
    assert "sterilizing" in line_with(text, "State")
    assert "ON" in line_with(text, "UV-C")
    assert "closed, roller docked" in line_with(text, "Lid")


def test_sterile_until_is_shown_with_the_time_left() -> None:
    m = model()
    payload = state(
        state="idle",
        zone="none",
        force_n=0.0,
        sterile=True,
        sterile_until="2026-11-25T10:30:00.123Z",
        case="sterile",
        session_no=None,
    )
    feed(m, TOPICS.state, "state", payload)
    line = line_with(shown(m, T0 + 60), "Disinfected")
    assert "Disinfected until 10:30 (29 min)" in line
    assert "(expired)" in line_with(shown(m, T0 + 3600), "Disinfected")
    assert "disinfected" in line_with(shown(m, T0 + 60), "State")  # the case state "sterile"


def test_an_aborted_cycle_is_not_sterile() -> None:
    m = model()
    payload = state(
        state="idle",
        zone="none",
        force_n=0.0,
        case="aborted",
        alarm="sterilization_aborted",
        session_no=None,
        lid_closed=False,
        docked=True,
    )
    feed(m, TOPICS.state, "state", payload)
    text = shown(m)
    assert "aborted" in line_with(text, "State")
    assert "no" in line_with(text, "Disinfected")
    assert "UV-C CYCLE ABORTED" in line_with(text, "Alarm")


# --- session -------------------------------------------------------------------------------


def test_session_in_use_and_the_last_sessions_figures() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state())
    feed(m, TOPICS.session_last, "session_last", session_last())
    text = shown(m)
    assert "IN USE: session 7" in line_with(text, "Now")
    assert "2, 4 use(s)" in line_with(text, "Roller")
    assert "#6, 09:11:11, docked" in line_with(text, "Last")
    assert "41 s, 34 s in contact" in line_with(text, "Length")
    assert "peak 6.00 N, mean 2.86 N" in line_with(text, "peak")
    assert "2 episode(s), longest 5.5 s" in line_with(text, "episode")


def test_passes_live_and_the_last_sessions_technique() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state(passes=12, pass_force_n=1.874))
    technique = {
        "passes": 46,
        "pass_force_n": 1.92,
        "steadiness_cv": 0.153,
        "zone_share": {"light": 0.05, "ok": 0.85, "high": 0.1, "over": 0.0},
        "passes_high": 5,
        "passes_over": 0,
        "longest_ok_s": 12.4,
    }
    feed(m, TOPICS.session_last, "session_last", session_last(technique=technique))
    text = shown(m)
    lines = [line for line in text.splitlines() if "Passes" in line]
    assert any("12, latest pass 1.87 N" in line for line in lines), text
    assert any("46, median 1.92 N, spread 15 %" in line for line in lines), text


def test_a_last_session_from_before_passes_says_unknown_not_zero() -> None:
    m = model()
    feed(m, TOPICS.session_last, "session_last", session_last())
    assert "unknown (not measured)" in line_with(shown(m), "Passes")


def test_a_session_flagged_too_soon_and_unsterile_says_so() -> None:
    m = model()
    feed(
        m, TOPICS.session_last, "session_last", session_last(too_soon=True, sterile_at_start=False)
    )
    notes = [line for line in shown(m).splitlines() if "Note" in line]
    assert any("not disinfected at start" in n for n in notes)
    assert any("too soon" in n for n in notes)


# --- alarms and availability ---------------------------------------------------------------


def test_before_anything_arrives_the_view_says_so() -> None:
    m = WatchModel(TOPICS, address="broker.lan:1883")
    text = shown(m)
    assert "connecting to broker.lan:1883" in text
    assert "device no data yet" in text
    assert "no data yet" in line_with(text, "Force")
    assert "0.00 N" not in text


def test_availability_online_and_offline() -> None:
    m = model()
    m.ingest(TOPICS.availability, b"online", T0)
    assert "device online" in shown(m)
    feed(m, TOPICS.state, "state", sterilizing(60.0))
    m.ingest(TOPICS.availability, b"offline", T0 + 1)
    text = shown(m, T0 + 5)
    assert "device OFFLINE" in text
    assert "last known" in line_with(text, "Force")
    # An offline device's countdown is not invented.
    assert "left" not in line_with(text, "Cycle")


def test_silenced_is_shown_with_the_alarm() -> None:
    m = model()
    feed(
        m,
        TOPICS.state,
        "state",
        state(force_n=5.0, zone="over", alarm="over_pressure", silenced=True),
    )
    assert "buzzer silenced" in line_with(shown(m), "Alarm")


def test_a_lost_connection_is_shown() -> None:
    m = model()
    m.set_link("lost")
    assert "connection to broker.lan:1883 lost, reconnecting" in shown(m)


# --- events --------------------------------------------------------------------------------


def test_events_are_listed_newest_first_and_deduplicated_by_id() -> None:
    m = model()
    started = event("session_started", {"session_no": 7, "roller_use": 4}, seq=3)
    over = event("over_pressure", {"force_n": 4.61, "limit_n": 4.5}, seq=4)
    assert feed(m, TOPICS.event, "event", started)
    assert feed(m, TOPICS.event, "event", over)
    # QoS 1 redelivers: the same id again is ignored.
    assert not feed(m, TOPICS.event, "event", copy.deepcopy(over))
    text = shown(m)
    assert text.count("over_pressure ") == 1
    assert m.duplicates == 1
    first, second = (i for i, line in enumerate(text.splitlines()) if "10:00:0" in line)
    assert "over_pressure" in text.splitlines()[first]
    assert "ALARM over-pressure: 4.61 N before smoothing (limit 4.50 N)" in text.splitlines()[first]
    assert "session 7 started (roller use 4)" in text.splitlines()[second]


def test_only_the_last_ten_events_are_kept() -> None:
    m = model()
    for seq in range(1, 15):
        feed(
            m,
            TOPICS.event,
            "event",
            event("command_result", {"command": "ping", "ok": True}, seq=seq),
        )
    text = shown(m)
    assert text.count("command ping: ok") == 10
    assert "10:00:14" in text and "10:00:05" in text and "10:00:04" not in text


@pytest.mark.parametrize(
    ("etype", "data", "expected"),
    [
        ("sterilization_completed", {"cycle_id": 3, "duration_s": 600.2}, "UV-C cycle 3 completed"),
        ("command_result", {"command": "sterilize", "ok": False, "error": "lid open"}, "lid open"),
        ("new_roller", {"roller_id": 3}, "roller 3 is in use"),
        # The data is the network's: a template that cannot take it falls back to key=value.
        ("over_pressure", {"force_n": None, "limit_n": 4.5}, "force_n=None limit_n=4.5"),
        ("sensor_fault", {}, ""),
        ("something_new", {"a": 1, "b": [1, 2]}, "a=1 b=[1, 2]"),
    ],
)
def test_event_summaries_are_one_short_line(
    etype: str, data: dict[str, Any], expected: str
) -> None:
    summary = event_summary(etype, data)
    assert expected in summary
    assert "\n" not in summary and len(summary) <= 90


# --- what does not fit the contract --------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (TOPICS.state, b"not json"),
        (TOPICS.state, b"[1, 2]"),
        (TOPICS.state, b"\xff\xfe"),
        (TOPICS.state, json.dumps(state(v=2)).encode()),
        (TOPICS.state, json.dumps(state(force_n="2.0")).encode()),
        (TOPICS.state, json.dumps(state(sterile=1)).encode()),
        (TOPICS.state, json.dumps(state(ts="yesterday")).encode()),
        (TOPICS.state, b'{"v":1,"ts":"2026-11-25T10:00:00.123Z","force_n":NaN}'),
        (
            TOPICS.state,
            json.dumps(state()).replace('"force_n": 2.345', '"force_n": 1e999').encode(),
        ),
        (TOPICS.state, json.dumps(state(force_n=10**400)).encode()),
        (TOPICS.state, json.dumps(state(ts="0001-01-01T00:00:00+01:00")).encode()),
        (TOPICS.force, json.dumps(force(True, "ok")).encode()),  # a bool is no number
        (TOPICS.event, json.dumps(event("over_pressure", {}) | {"data": []}).encode()),
        (TOPICS.event, json.dumps(event("over_pressure", {}) | {"seq": "1"}).encode()),
        (TOPICS.session_last, json.dumps(session_last(duration_s=None)).encode()),
        (TOPICS.availability, b"maybe"),
    ],
)
def test_malformed_payloads_are_ignored_and_counted(topic: str, payload: bytes) -> None:
    m = model()
    feed(m, TOPICS.state, "state", state(force_n=2.0, zone="ok"))
    before = shown(m)
    assert m.ingest(topic, payload, T0) is False
    assert m.malformed == 1
    text = shown(m)
    assert "1 malformed message(s) ignored" in text
    # What was shown before is still shown.
    assert line_with(text, "Force") == line_with(before, "Force")


def test_an_empty_retained_state_clears_it() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state())
    assert m.ingest(TOPICS.state, b"", T0 + 1)
    assert m.snapshot is None and m.malformed == 0
    assert "no data yet" in line_with(shown(m, T0 + 1), "State")


def test_other_topics_are_ignored_without_counting() -> None:
    m = model()
    assert m.ingest("dermaguard/kitchen/state", json.dumps(state()).encode(), T0) is False
    assert m.malformed == 0 and m.snapshot is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutated(base: dict[str, Any], key: str, value: Any) -> bytes:
    out = copy.deepcopy(base)
    out[key] = value
    return json.dumps(out).encode()


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(
        [TOPICS.state, TOPICS.force, TOPICS.event, TOPICS.session_last, TOPICS.availability]
    ),
    payload=st.one_of(
        st.binary(max_size=64),
        _json.map(lambda v: json.dumps(v).encode()),
        st.tuples(st.sampled_from(sorted(state())), _json).map(lambda kv: _mutated(state(), *kv)),
        st.tuples(st.sampled_from(sorted(session_last())), _json).map(
            lambda kv: _mutated(session_last(), *kv)
        ),
        st.tuples(st.sampled_from(["id", "seq", "type", "ts", "data"]), _json).map(
            lambda kv: _mutated(event("over_pressure", {"force_n": 5.0, "limit_n": 4.5}), *kv)
        ),
    ),
)
def test_no_payload_makes_the_model_or_the_view_raise(topic: str, payload: bytes) -> None:
    m = model()
    accepted = m.ingest(topic, payload, T0)
    assert accepted or m.malformed == 1 or m.duplicates == 1
    shown(m, T0 + 1)


def narrow(m: WatchModel, now: float = T0, *, once: bool = False) -> str:
    """The view as ``watch --once`` prints it into an 80-column terminal or a pipe."""
    console = Console(record=True, width=80, color_system=None, file=io.StringIO())
    console.print(render(m, now, tz=UTC, once=once))
    return console.export_text()


def test_at_80_columns_no_line_wraps_and_too_soon_keeps_its_useful_part() -> None:
    m = model()
    m.ingest(TOPICS.availability, b"online", T0)
    payload = state(
        state="idle",
        zone="none",
        force_n=0.0,
        sterile=True,
        sterile_until="2026-11-25T10:30:00.123Z",
        case="sterile",
        session_no=None,
    )
    feed(m, TOPICS.state, "state", payload)
    last = session_last(too_soon=True, sterile_at_start=False, rest_interval_s=754.0)
    feed(m, TOPICS.session_last, "session_last", last)
    too_soon = {
        "session_no": 7,
        "rest_interval_s": 754.0,
        "rest_required_s": 172_800.0,
        "next_allowed_at": "2026-11-27T09:11:11.312Z",
    }
    feed(m, TOPICS.event, "event", event("too_soon", too_soon))
    text = narrow(m, T0 + 60)
    assert "Disinfected until 10:30 (29 min)" in line_with(text, "Disinfected")
    assert "not disinfected at start" in text and "too soon after the one before" in text
    # Every label row holds its whole value: a wrapped row would leave a line without one.
    body = [ln for ln in text.splitlines() if ln.startswith("│")]
    labels = ("Force", "Alarm", "State", "UV-C", "Lid", "Disinfected", "Now", "Roller", "Last")
    for label in labels:
        assert sum(label in ln for ln in body) >= 1, (label, text)
    assert all(len(ln) <= 80 for ln in text.splitlines())
    assert "next allowed " in line_with(text, "too_soon"), text


def test_once_says_why_its_recent_events_are_empty() -> None:
    m = model()
    feed(m, TOPICS.state, "state", state())
    text = narrow(m, once=True)
    assert "none while --once waited: the broker keeps no past events" in text
    assert "none since watching began" not in text


def test_the_header_never_breaks_a_phrase_at_80_columns_without_a_terminal() -> None:
    # A pipe or a service gets rich's 80 columns: the header breaks between its phrases only.
    m = WatchModel(Topics("dermaguard-sim"), zones=ZonesConfig(), address="localhost:1883")
    m.set_link("connected")
    m.ingest(m.topics.availability, b"online", T0)
    feed(m, m.topics.state, "state", state())
    console = Console(record=True, width=80, color_system=None, file=io.StringIO())
    console.print(render(m, T0, tz=UTC))
    lines = console.export_text().splitlines()
    for phrase in ("dermaguard/dermaguard-sim", "localhost:1883 connected", "device online",
                   "state of 10:00:00"):  # fmt: skip
        assert any(phrase in line for line in lines[:3]), (phrase, lines[:3])
