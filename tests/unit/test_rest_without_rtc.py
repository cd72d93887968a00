"""S10 on a Pi without a real-time clock: a rest measured on an unsynchronised clock is unknown.

The shell reports the clock (``ClockSync``); the wall time it passes may be days off or 1970
until then. Examples from the field: a session dated three days early followed ten minutes
later, after the clock stepped, by one that counted 72 h of rest; the other way round a
negative rest; with no saved clock, records dated 1970.
"""

from __future__ import annotations

import json
import uuid

from jsonschema import Draft202012Validator

from dermaguard.common.timefmt import iso_utc
from dermaguard.config.params import default_engine_params, default_session_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged
from dermaguard.core.engine import Engine, History
from dermaguard.core.events import ClockSync, EmitEvent, Event, ForceRead
from dermaguard.core.filters import Median
from dermaguard.core.words import describe
from dermaguard.mqtt.payloads import event_envelope, session_last_payload
from dermaguard.mqtt.schema_files import load_schema

CAL = Calibration(offset=0.0, scale_n_per_count=1 / 40_000)
DAY = 86_400.0
HOUR = 3600.0
TRUE_WALL0 = 1_790_000_000.0  # the real time at t = 0 (2026)
REST_S = 72 * HOUR


class Device:
    """An engine fed by a shell whose wall clock reads ``true time + error``."""

    def __init__(self, history: History | None = None) -> None:
        params = default_engine_params(session=default_session_params(rest_s=REST_S))
        self.e = Engine(params, CAL, (Median(3),), (), history)
        self.error = 0.0  # what the wall clock is off by (its guess minus the real time)
        self.events: list[Event] = []

    def send(self, inp: object) -> None:
        wall = TRUE_WALL0 + inp.t + self.error  # type: ignore[attr-defined]
        for eff in self.e.handle(inp, wall):  # type: ignore[arg-type]
            if isinstance(eff, EmitEvent):
                self.events.append(eff.event)

    def session(self, t: float, seconds: float = 60.0) -> float:
        """Take the roller out at ``t``, roll for ``seconds``, dock it; returns the end."""
        self.send(DockChanged(t, False))
        n = round(seconds * 80)
        for i in range(n):
            self.send(ForceRead(t + 1.0 + i / 80, 2 * 40_000))
        end = t + 1.0 + n / 80
        self.send(DockChanged(end, True))
        return end

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


def test_s10_a_clock_step_between_two_sessions_is_not_counted_as_rest() -> None:
    """Dated three days early, then ten minutes later after the clock stepped: 10 min of rest,
    too soon (it used to count 72 h and allow it)."""
    d = Device()
    d.error = -3 * DAY
    d.send(ClockSync(0.0, False))
    end = d.session(10.0)
    d.error = 0.0
    d.send(ClockSync(end + 300.0, True))  # NTP steps the clock
    d.session(end + 600.0)
    second = d.of("session_started")[1].data
    assert second["too_soon"] is True
    assert 599.0 <= second["rest_interval_s"] <= 602.0
    assert len(d.of("too_soon")) == 1
    assert not d.of("rest_unknown")


def test_s10_a_stale_clock_at_the_later_session_gives_an_unknown_rest_not_a_negative_one() -> None:
    """The last session (an earlier boot) was on a synchronised clock; this boot's clock is
    stale, before it: the rest is unknown, neither negative (too soon) nor long."""
    history = History(last_session_no=1, last_session_end_wall=TRUE_WALL0 - 600.0)
    d = Device(history)
    d.error = -2 * DAY  # fake-hwclock's last save
    d.send(ClockSync(0.0, False))
    d.session(10.0)
    started = d.of("session_started")[0].data
    assert started["too_soon"] is None
    assert started["rest_interval_s"] is None
    assert started["rest_unknown"] == "clock_not_synchronized"
    assert started["clock_synced"] is False
    assert not d.of("too_soon")
    [unknown] = d.of("rest_unknown")
    assert unknown.data["reason"] == "clock_not_synchronized"
    assert "rest not checked" in describe(unknown)
    summary = d.of("session_ended")[0].data
    assert summary["too_soon"] is None
    assert summary["rest_unknown"] == "clock_not_synchronized"
    assert summary["clock_synced"] is False


def test_s10_a_clock_at_1970_after_a_long_rest_is_unknown_not_too_soon() -> None:
    history = History(last_session_no=3, last_session_end_wall=TRUE_WALL0 - 5 * DAY)
    d = Device(history)
    d.error = -TRUE_WALL0  # no saved clock: the epoch
    d.send(ClockSync(0.0, False))
    d.session(10.0)
    started = d.of("session_started")[0].data
    assert started["too_soon"] is None and started["rest_interval_s"] is None
    assert not d.of("too_soon")


def test_s10_a_last_session_dated_by_an_unsynchronised_clock_gives_an_unknown_rest() -> None:
    """The clock is right now, but the last session (an earlier run) was not dated by it."""
    history = History(
        last_session_no=2,
        last_session_end_wall=TRUE_WALL0 - 3 * DAY,
        last_session_end_synced=False,
    )
    d = Device(history)
    d.send(ClockSync(0.0, True))
    d.session(10.0)
    started = d.of("session_started")[0].data
    assert started["too_soon"] is None
    assert started["rest_unknown"] == "last_session_time_unknown"
    assert "clock_synced" not in started


def test_s10_synchronised_clocks_at_both_ends_check_the_rest_as_before() -> None:
    history = History(last_session_no=1, last_session_end_wall=TRUE_WALL0 - 10 * HOUR)
    d = Device(history)
    d.send(ClockSync(0.0, True))
    d.session(10.0)
    started = d.of("session_started")[0].data
    assert started["too_soon"] is True
    assert "rest_unknown" not in started and "clock_synced" not in started


def test_the_clock_state_is_an_event_at_the_first_report_and_at_each_change() -> None:
    d = Device()
    d.send(ClockSync(0.0, False))
    d.send(ClockSync(1.0, False))
    d.send(ClockSync(2.0, True))
    d.send(ClockSync(3.0, True))
    assert [(e.t, e.data) for e in d.of("clock_sync")] == [
        (0.0, {"synced": False}),
        (2.0, {"synced": True}),
    ]
    assert "not synchronised" in describe(d.of("clock_sync")[0])


def test_an_unknown_rest_is_valid_under_the_mqtt_contract() -> None:
    history = History(last_session_no=1, last_session_end_wall=TRUE_WALL0 - 600.0)
    d = Device(history)
    d.send(ClockSync(0.0, False))
    d.session(10.0)
    summary = dict(d.of("session_ended")[0].data)
    Draft202012Validator(load_schema("session_last")).validate(
        json.loads(session_last_payload(summary))
    )
    for event in d.events:
        envelope = event_envelope(
            seq=1,
            event_id=str(uuid.uuid4()),
            device="dg",
            etype=event.type,
            ts="2026-12-06T06:00:00.000Z",
            data=dict(event.data),
        )
        Draft202012Validator(load_schema("event")).validate(json.loads(envelope))


def test_a_clock_synchronised_from_the_start_adds_no_event() -> None:
    d = Device()
    d.send(ClockSync(0.0, True))
    d.send(ClockSync(5.0, True))
    assert not d.of("clock_sync")


def test_a_sync_mid_session_dates_its_start_truly() -> None:
    d = Device()
    d.error = -3 * DAY
    d.send(ClockSync(0.0, False))
    d.send(DockChanged(10.0, False))
    for i in range(80):
        d.send(ForceRead(11.0 + i / 80, 2 * 40_000))
    d.error = 0.0
    d.send(ClockSync(20.0, True))
    d.send(DockChanged(30.0, True))
    summary = d.of("session_ended")[0].data
    assert summary["started_at"] == iso_utc(TRUE_WALL0 + 10.0)
    assert summary["ended_at"] == iso_utc(TRUE_WALL0 + 30.0)
    assert "clock_synced" not in summary
