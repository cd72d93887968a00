"""Command validation on the network thread: every bad command gets a clear, specific error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.core.events import Command
from dermaguard.mqtt.commands import (
    COMMAND_BURST,
    MAX_PAYLOAD,
    REPLIES_PER_MIN,
    RETAINED,
    CommandParser,
)
from dermaguard.mqtt.topics import COMMANDS, Topics

TOPICS = Topics("dev1")


def parse(name: str, payload: bytes | str, t: float = 0.0, per_min: int = 600) -> Command | None:
    raw = payload.encode() if isinstance(payload, str) else payload
    return CommandParser(TOPICS, per_min).parse(TOPICS.cmd(name), raw, t)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_known_command_with_an_empty_payload_or_object_is_accepted(name: str) -> None:
    for payload in ("", "{}", '{"request_id": "r1"}'):
        cmd = parse(name, payload)
        assert cmd is not None and cmd.error is None and cmd.name == name


def test_request_id_and_arguments_are_passed_on() -> None:
    cmd = parse("silence", '{"request_id": "abc", "duration_s": 30}')
    assert cmd == Command(0.0, "silence", "abc", {"duration_s": 30})


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("dance", "{}", "unknown command 'dance': known commands are tare, sterilize"),
        ("tare/now", "{}", "unknown command 'tare/now'"),
        ("tare", "x" * (MAX_PAYLOAD + 1), "payload too large: 1025 bytes (at most 1024)"),
        ("tare", b"\xff\xfe", "payload is not UTF-8 text"),
        ("tare", "{nope", "payload is not JSON"),
        ("tare", "NaN", "payload is not JSON"),
        ("tare", "[1, 2]", "payload must be a JSON object, got an array"),
        ("tare", '"hi"', "payload must be a JSON object, got a string"),
        ("tare", "null", "payload must be a JSON object, got null"),
        ("tare", '{"request_id": 5}', "request_id 5 is not allowed: must be a string of 1 to 64"),
        ("tare", '{"request_id": ""}', "request_id '' is not allowed"),
        ("tare", '{"force": 1}', "tare: unknown field 'force' (allowed: request_id)"),
        ("silence", '{"duration_s": 0}', "silence: duration_s 0 is not allowed: must be a number"),
        ("silence", '{"duration_s": true}', "silence: duration_s true is not allowed"),
        ("silence", '{"duration_s": 1e999}', "silence: duration_s"),
    ],
)
def test_a_bad_command_is_refused_with_a_clear_error(
    name: str, payload: str | bytes, error: str
) -> None:
    cmd = parse(name, payload)
    assert cmd is not None and cmd.error is not None
    assert error in cmd.error, cmd.error


@pytest.mark.parametrize("name", COMMANDS)
def test_a_retained_command_is_refused_with_why_and_a_live_one_acts(name: str) -> None:
    """A retained message may be old: acting on it would repeat it at every start."""
    parser = CommandParser(TOPICS, 600)
    old = parser.parse(TOPICS.cmd(name), b'{"request_id": "r1"}', 0.0, retained=True)
    assert old == Command(0.0, name, "r1", error=RETAINED)
    assert "retained" in RETAINED and "fresh" in RETAINED
    live = parser.parse(TOPICS.cmd(name), b'{"request_id": "r2"}', 1.0)
    assert live is not None and live.error is None


def test_a_refused_command_still_echoes_a_valid_request_id() -> None:
    cmd = parse("tare", '{"request_id": "keep-me", "bogus": 1}')
    assert cmd is not None and cmd.error is not None and cmd.request_id == "keep-me"


def test_rate_limit_refuses_with_an_answer_then_drops_past_the_reply_budget() -> None:
    parser = CommandParser(TOPICS, commands_per_min=6)
    results = [parser.parse(TOPICS.cmd("ping"), b"{}", 0.0) for _ in range(6 + REPLIES_PER_MIN + 5)]
    accepted = [c for c in results if c is not None and c.error is None]
    refused = [c for c in results if c is not None and c.error is not None]
    assert len(accepted) == 6
    assert len(refused) == REPLIES_PER_MIN and "rate limit" in (refused[0].error or "")
    assert results[-5:] == [None] * 5 and parser.dropped == 5
    # A minute later the budget is back.
    later = parser.parse(TOPICS.cmd("ping"), b"{}", 60.0)
    assert later is not None and later.error is None


def test_rate_limit_is_what_mqtt_md_says_a_burst_of_ten_then_the_rate() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "MQTT.md").read_text(encoding="utf-8")
    assert f"up to {COMMAND_BURST} at once" in " ".join(doc.split())
    parser = CommandParser(TOPICS, commands_per_min=30)
    burst = [parser.parse(TOPICS.cmd("ping"), b"{}", 0.0) for _ in range(COMMAND_BURST + 1)]
    assert all(c is not None and c.error is None for c in burst[:COMMAND_BURST])
    last = burst[-1]
    assert last is not None
    assert last.error == (
        "rate limit: 10 commands at once, then one every 2 s (30 a minute); try again shortly"
    )
    # One every 2 s after the burst: 30 a minute on average.
    assert (parser.parse(TOPICS.cmd("ping"), b"{}", 1.9) or last).error is not None
    again = parser.parse(TOPICS.cmd("ping"), b"{}", 2.1)
    assert again is not None and again.error is None


@settings(max_examples=300, deadline=None)
@given(
    name=st.one_of(st.sampled_from(COMMANDS), st.text(max_size=40)),
    payload=st.one_of(
        st.binary(max_size=1100),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.dictionaries(
                st.sampled_from(["request_id", "duration_s", "x"]),
                st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
            ),
        ),
    ),
)
def test_any_payload_on_any_command_topic_gives_a_command_or_an_error(
    name: str, payload: bytes
) -> None:
    cmd = CommandParser(TOPICS, 600).parse(TOPICS.cmd(name), payload, 0.0)
    assert cmd is not None
    if cmd.error is None:
        assert cmd.name in COMMANDS
        assert set(cmd.args) <= {"duration_s"}
    else:
        assert cmd.error.strip()


def test_a_very_long_unknown_name_is_answered_with_a_bounded_echo() -> None:
    cmd = parse("x" * 60_000, "{}")
    assert cmd is not None and cmd.error is not None
    assert len(cmd.name) <= 64 and len(cmd.error) < 300
