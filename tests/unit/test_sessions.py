"""Sessions in the pure core: start, end, summary, and the care rules S9 and S10."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.common.timefmt import iso_utc as iso
from dermaguard.config.load import ConfigError, parse_config
from dermaguard.config.params import default_engine_params, default_session_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged
from dermaguard.core.engine import Engine, History
from dermaguard.core.events import ClockSync, EmitEvent, Event, ForceRead, Tick
from dermaguard.core.filters import Median
from dermaguard.core.session import SessionTracker

CAL = Calibration(offset=0.0, scale_n_per_count=1 / 40_000)
DAY = 86_400.0
WALL0 = 1_790_000_000.0  # a fixed wall time in 2026


def engine(history: History | None = None, **session: float) -> Engine:
    params = default_engine_params(session=default_session_params(**session))
    return Engine(params, CAL, (Median(3),), (), history)


class Driver:
    """Feeds an engine with wall time = WALL0 + offset + monotonic time."""

    def __init__(self, e: Engine, wall_offset: float = 0.0) -> None:
        self.e, self.offset, self.events = e, wall_offset, []  # type: list[Event]

    def send(self, inp: object) -> None:
        for eff in self.e.handle(inp, WALL0 + self.offset + inp.t):  # type: ignore[attr-defined]
            if isinstance(eff, EmitEvent):
                self.events.append(eff.event)

    def roll(self, t0: float, seconds: float, force_n: float) -> float:
        n = round(seconds * 80)
        for i in range(n):
            self.send(ForceRead(t0 + i / 80, round(force_n * 40_000)))
        return t0 + n / 80

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


def test_a_session_starts_at_first_contact_out_of_the_dock_and_ends_when_docked() -> None:
    d = Driver(engine())
    d.send(DockChanged(0.0, True))
    d.send(DockChanged(10.0, False))
    t = d.roll(12.0, 1.0, 0.0)  # out of the dock, not touching: no session yet
    assert "session_started" not in d.types()
    t = d.roll(t, 5.0, 2.0)
    t = d.roll(t, 1.0, 5.0)  # one over-pressure episode
    t = d.roll(t, 2.0, 2.0)
    t = d.roll(t, 1.0, 0.0)
    d.send(DockChanged(t, True))
    started = d.of("session_started")[0].data
    assert started["session_no"] == 1 and started["sterile"] is False
    assert started["started_at"] == iso(WALL0 + 10.0)
    summary = d.of("session_ended")[0].data
    assert summary["end_reason"] == "docked"
    assert summary["duration_s"] == pytest.approx(t - 10.0, abs=0.02)
    assert summary["contact_s"] == pytest.approx(8.0, abs=0.1)
    assert summary["over_episodes"] == 1
    assert summary["longest_over_s"] == pytest.approx(1.0, abs=0.05)
    assert summary["peak_n"] == pytest.approx(5.0, abs=1e-3)
    assert 2.0 < summary["mean_n"] < 5.0
    assert summary["zone_s"]["ok"] == pytest.approx(7.0, abs=0.1)
    assert summary["roller_use"] == 1


def test_taking_the_roller_out_without_touching_is_not_a_session() -> None:
    d = Driver(engine())
    d.send(DockChanged(0.0, False))
    t = d.roll(0.0, 3.0, 0.0)
    d.send(DockChanged(t, True))
    assert d.types() == []


def test_an_idle_timeout_ends_the_session_and_a_later_contact_starts_another() -> None:
    d = Driver(engine(idle_timeout_s=30.0))
    d.send(DockChanged(0.0, False))
    t = d.roll(1.0, 2.0, 2.0)
    t = d.roll(t, 1.0, 0.0)
    d.send(Tick(t + 40.0))
    ended = d.of("session_ended")
    assert len(ended) == 1 and ended[0].data["end_reason"] == "idle_timeout"
    d.roll(t + 50.0, 1.0, 2.0)
    assert [e.data["session_no"] for e in d.of("session_started")] == [1, 2]


def test_after_an_idle_end_the_next_session_dates_from_its_own_first_contact() -> None:
    d = Driver(engine(idle_timeout_s=30.0))
    d.send(DockChanged(0.0, False))
    t = d.roll(1.0, 2.0, 2.0)
    t = d.roll(t, 1.0, 0.0)
    d.send(Tick(t + 40.0))  # idle: the first session ends
    t_touch = t + 100.0
    t = d.roll(t_touch, 2.0, 2.0)
    d.send(DockChanged(t, True))
    second = d.of("session_started")[1].data
    # Contact shows once the median of three readings has it (before: the timeout, 60 s early).
    assert second["t_start"] == pytest.approx(t_touch, abs=0.05)
    assert second["started_at"] == iso(WALL0 + second["t_start"])
    assert d.of("session_ended")[1].data["duration_s"] == pytest.approx(t - t_touch, abs=0.05)


def test_an_idle_end_never_counts_more_contact_than_the_session_lasted() -> None:
    """At 10 readings a second the last contact reading stands for 0.1 s: the session lasts
    until the reading that ended the contact."""
    tracker = SessionTracker(default_session_params(idle_timeout_s=30.0))
    tracker.undocked(0.0)
    tracker.contact(0.0, WALL0, True, None)
    for i in range(10):
        tracker.sample(i / 10, 2.0, "ok")
    tracker.sample(1.0, 0.0, "none")
    (ended,) = tracker.tick(40.0, WALL0 + 40.0)
    summary = ended.data
    assert summary["end_reason"] == "idle_timeout"
    assert summary["contact_s"] == pytest.approx(1.0) and summary["duration_s"] == pytest.approx(
        1.0
    )
    assert summary["ended_at"] == iso(WALL0 + 1.0)


def test_s10_a_session_sooner_than_the_rest_interval_raises_too_soon() -> None:
    history = History(last_session_no=4, last_session_end_wall=WALL0 - 1 * DAY)
    d = Driver(engine(history, rest_s=2 * DAY))
    d.send(DockChanged(0.0, False))
    d.roll(1.0, 1.0, 2.0)
    too_soon = d.of("too_soon")
    assert len(too_soon) == 1
    assert too_soon[0].data["session_no"] == 5
    assert too_soon[0].data["next_allowed_at"] == iso(WALL0 + 1 * DAY)
    assert d.of("session_started")[0].data["too_soon"] is True


def test_s10_the_published_state_carries_the_devices_own_rest_rule_and_session_start() -> None:
    # What a dashboard judges "ready?" from: this device's history, never another's summary.
    history = History(last_session_no=4, last_session_end_wall=WALL0 - 1 * DAY)
    e = engine(history, rest_s=2 * DAY)
    before = e.device_state(0.0, WALL0)
    assert (before.last_session_no, before.last_ended_wall) == (4, WALL0 - 1 * DAY)
    assert before.next_allowed_wall == WALL0 + 1 * DAY
    assert (before.session_sterile_at_start, before.session_too_soon) == (None, None)
    d = Driver(e)
    d.send(DockChanged(0.0, False))
    t = d.roll(1.0, 1.0, 2.0)
    during = e.device_state(t, WALL0 + t)
    assert during.session_no == 5 and during.last_session_no == 4
    assert (during.session_sterile_at_start, during.session_too_soon) == (False, True)
    d.send(DockChanged(t, True))
    after = e.device_state(t, WALL0 + t)
    assert (after.last_session_no, after.last_ended_wall) == (5, WALL0 + t)
    assert after.next_allowed_wall == WALL0 + t + 2 * DAY


def test_s10_a_session_after_the_rest_interval_is_not_too_soon() -> None:
    history = History(last_session_no=1, last_session_end_wall=WALL0 - 3 * DAY)
    d = Driver(engine(history, rest_s=2 * DAY))
    d.send(DockChanged(0.0, False))
    d.roll(1.0, 1.0, 2.0)
    assert "too_soon" not in d.types()
    assert d.of("session_started")[0].data["rest_interval_s"] == pytest.approx(3 * DAY + 1, abs=1)


def test_s9_the_home_profile_refuses_needles_over_one_millimetre() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"care": {"needle_mm": 1.5}})
    assert "care.needle_mm: 1.5 is not allowed: the home profile allows at most 1 mm" in str(err)
    assert parse_config({"care": {"needle_mm": 1.0}}).care.needle_mm == 1.0
    clinic = parse_config({"profile": "clinic", "care": {"needle_mm": 1.5}})
    assert clinic.care.rest_s == 7 * DAY


@pytest.mark.parametrize(("needle", "hours"), [(0.25, 24), (0.5, 48), (1.0, 72)])
def test_rest_interval_follows_the_needle_length(needle: float, hours: float) -> None:
    assert parse_config({"care": {"needle_mm": needle}}).care.rest_s == hours * 3600


def test_roller_replace_due_once_the_uses_reach_the_limit() -> None:
    history = History(roller_id=3, roller_uses=9)
    d = Driver(engine(history, replace_after_uses=10, rest_s=0.0))
    d.send(DockChanged(0.0, False))
    d.roll(1.0, 1.0, 2.0)
    due = d.of("roller_replace_due")
    assert due and due[0].data == {"roller_id": 3, "uses": 10, "limit": 10}


def test_shutdown_closes_an_open_session() -> None:
    e = engine()
    d = Driver(e)
    d.send(DockChanged(0.0, False))
    t = d.roll(1.0, 1.0, 2.0)
    effects = e.shutdown(t, WALL0 + t)
    kinds = [x.event.type for x in effects if isinstance(x, EmitEvent)]
    assert kinds == ["session_ended", "daemon_stopping"]


@settings(max_examples=100, deadline=None)
@given(jump=st.floats(-7200, 7200))
def test_a_wall_clock_jump_mid_session_does_not_change_durations(jump: float) -> None:
    """Durations come from the monotonic time; the wall clock only dates the records."""
    d = Driver(engine())
    d.send(DockChanged(0.0, False))
    t = d.roll(1.0, 2.0, 2.0)
    d.offset = jump
    t = d.roll(t, 2.0, 2.0)
    d.send(DockChanged(t, True))
    summary = d.of("session_ended")[0].data
    assert summary["duration_s"] == pytest.approx(t, abs=0.02)
    assert summary["contact_s"] == pytest.approx(4.0, abs=0.05)


def test_tracker_without_samples_keeps_unknown_figures_unknown() -> None:
    tracker = SessionTracker(default_session_params())
    tracker.undocked(0.0)
    tracker.contact(1.0, WALL0, True, 7)
    (ended,) = tracker.docked(2.0, WALL0 + 1)
    assert ended.data["peak_n"] is None and ended.data["mean_n"] is None
    assert ended.data["cycle_id"] == 7 and ended.data["sterile_at_start"] is True


def test_a_sensor_fault_mid_contact_does_not_drag_the_mean_down() -> None:
    """The stretch before a fault is known (the last reading held) and counts whole, force and
    time together; the stretch while the force is unknown counts neither."""
    tracker = SessionTracker(default_session_params())
    tracker.undocked(0.0)
    tracker.contact(1.0, WALL0, True, None)
    t = 1.0
    for _ in range(40):
        tracker.sample(t, 2.0, "ok")
        t += 1 / 80
    for _ in range(6):  # unplugged: one unknown reading per timeout
        t += 3 / 80
        tracker.sample(t, None, None)
    for _ in range(40):
        t += 1 / 80
        tracker.sample(t, 2.0, "ok")
    (ended,) = tracker.docked(t, WALL0 + t)
    assert ended.data["mean_n"] == pytest.approx(2.0, abs=1e-3)
    # 39 intervals between readings, the last reading held until the fault showed (4 periods
    # after it), nothing while unplugged, then 39 intervals again.
    assert ended.data["contact_s"] == pytest.approx((39 + 4 + 39) / 80, abs=0.006)


@settings(max_examples=200, deadline=None)
@given(
    force=st.floats(0.5, 9.0),
    steps=st.lists(
        st.tuples(
            st.floats(0.001, 0.6),
            st.booleans(),
            st.sampled_from(["none", "light", "ok", "high", "over"]),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_the_summary_accounts_each_interval_once_whatever_the_gaps_and_faults(
    force: float, steps: list[tuple[float, bool, str]]
) -> None:
    """Zone times add up to the contact time, and a constant force has itself as the mean, with
    any mix of unknown readings and gaps (over the gap limit, not counted at all)."""
    tracker = SessionTracker(default_session_params())
    tracker.undocked(0.0)
    tracker.contact(0.0, WALL0, True, None)
    tracker.sample(0.0, force, "ok")
    t = 0.0
    for dt, known, zone in steps:
        t += dt
        tracker.sample(t, force if known else None, zone if known else None)  # type: ignore[arg-type]
    (ended,) = tracker.docked(t, WALL0 + t)
    summary = ended.data
    assert sum(summary["zone_s"].values()) == pytest.approx(summary["contact_s"], abs=0.03)
    assert summary["contact_s"] <= summary["duration_s"] + 0.01
    if summary["mean_n"] is not None:
        assert summary["mean_n"] == pytest.approx(force, abs=1e-3)


def test_readings_alone_end_an_idle_session() -> None:
    """The idle timeout is watched on readings too, not only on the runtime's ``Tick``: a
    session left idle ends while the sensor keeps reading nothing."""
    d = Driver(engine(idle_timeout_s=30.0))
    d.send(DockChanged(0.0, False))
    t = d.roll(1.0, 2.0, 2.0)
    d.roll(t, 40.0, 0.0)
    ended = d.of("session_ended")
    assert len(ended) == 1 and ended[0].data["end_reason"] == "idle_timeout"


def test_the_first_clock_report_unsynchronised_is_an_event() -> None:
    """A Pi has no real-time clock: the engine says when its wall times are guesses
    (``clock_sync``), at the first report if it is not synchronised and at every change."""
    d = Driver(engine())
    d.send(ClockSync(0.0, False))
    d.send(ClockSync(5.0, False))  # no change: nothing to say
    d.send(ClockSync(9.0, True))
    assert [(e.t, e.data) for e in d.of("clock_sync")] == [
        (0.0, {"synced": False}),
        (9.0, {"synced": True}),
    ]
