""" "Ready to roll?" on the dashboard: the verdict, each reason, and what to do when it says no."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from dermaguard.mqtt.decode import Snapshot
from dermaguard.ui.web.ready import Readiness, readiness

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # a Thursday
DAY = 24 * 3600.0

IDLE = Snapshot(
    ts=NOW,
    state="idle",
    zone="none",
    force_n=0.0,
    sterile=True,
    sterile_until=NOW + timedelta(minutes=12),
    uv_on=False,
    lid_closed=False,
    docked=False,
    case="sterile",
    remaining_s=None,
    session_no=None,
    roller_id=2,
    roller_uses=3,
    fault=None,
    alarm=None,
    silenced=False,
    rest_known=True,
    last_session_no=4,
    last_session_ended_at=NOW - timedelta(days=3),
    next_allowed_at=NOW - timedelta(days=2),
)


def rested(ended: timedelta, rest_s: float = DAY, snap: Snapshot = IDLE) -> Snapshot:
    """``snap`` with its last session ended ``ended`` ago, as the device publishes it."""
    end = NOW - ended
    return replace(snap, last_session_ended_at=end, next_allowed_at=end + timedelta(seconds=rest_s))


def ready(snapshot: Snapshot | None = IDLE, **kwargs: object) -> Readiness:
    args: dict[str, object] = {
        "online": True,
        "now": NOW,
        "device": "bathroom",
        "sterile_left_s": 720.0,
        "remaining_s": None,
        "rest_s": DAY,
        "replace_after_uses": 10,
        "calibrated": True,
        "tz": UTC,
    }
    args.update(kwargs)
    return readiness(snapshot, **args)  # type: ignore[arg-type]


def reason(r: Readiness, key: str) -> tuple[bool | None, str, str | None]:
    found = next(x for x in r.reasons if x.key == key)
    return found.ok, found.text, found.todo


def test_yes_when_every_reason_holds_and_it_says_until_when() -> None:
    r = ready()
    assert r.verdict == "yes"
    assert reason(r, "disinfected") == (True, "disinfected until 09:12 (12 min left)", None)
    assert all(x.ok for x in r.reasons)


def test_not_disinfected_in_the_open_case_says_close_the_lid() -> None:
    r = ready(replace(IDLE, sterile=False, sterile_until=None, docked=True, case="open"))
    assert r.verdict == "no"
    assert reason(r, "disinfected")[2] == "close the lid to start a cycle"


def test_not_disinfected_with_the_lid_closed_says_press_disinfect() -> None:
    snap = replace(IDLE, sterile=False, docked=True, lid_closed=True, case="ready")
    assert reason(ready(snap), "disinfected")[2] == "press Disinfect to start a cycle"


def test_a_running_cycle_is_not_yet_disinfected_and_says_its_time_left() -> None:
    r = ready(replace(IDLE, sterile=False, case="sterilizing", remaining_s=120.0), remaining_s=95.0)
    assert r.verdict == "no"
    assert reason(r, "disinfected")[:2] == (False, "a UV-C cycle is running")
    assert next(x for x in r.reasons if x.key == "disinfected").left_s == 95.0


def test_too_soon_names_the_next_allowed_time() -> None:
    r = ready(rested(timedelta(hours=2), 2 * DAY), rest_s=2 * DAY)
    ok, text, todo = reason(r, "rest")
    assert ok is False and r.verdict == "no"
    assert text == "only 2 h 00 min since the last session (the skin needs 2 days)"
    assert todo == "next allowed Sat 07:00"


def test_rest_counts_from_the_last_session() -> None:
    assert reason(ready(rested(timedelta(hours=30))), "rest")[0] is True
    none_yet = replace(IDLE, last_session_no=0, last_session_ended_at=None, next_allowed_at=None)
    assert reason(ready(none_yet), "rest") == (True, "no earlier session recorded", None)


def test_a_worn_roller_says_fit_a_new_one() -> None:
    r = ready(replace(IDLE, roller_uses=10))
    assert reason(r, "roller")[0] is False
    assert reason(r, "roller")[2] == "fit a new roller, then press New roller"


def test_a_sensor_fault_or_an_unknown_force_is_not_healthy() -> None:
    faulty = ready(replace(IDLE, force_n=None, zone=None, fault="not_ready"))
    assert reason(faulty, "sensor")[0] is False and "not_ready" in reason(faulty, "sensor")[1]
    assert ready(replace(IDLE, force_n=None, zone=None)).verdict == "no"


def test_no_calibration_is_a_no() -> None:
    r = ready(calibrated=False)
    assert r.verdict == "no"
    assert reason(r, "calibration")[2] == "run dermaguard calibrate on the Pi"


def test_offline_cannot_tell_rather_than_yes() -> None:
    r = ready(online=False)
    assert r.verdict == "unknown" and r.headline == "Cannot tell"
    assert reason(r, "device")[1] == "the device is offline"
    nothing = ready(None, online=False)
    assert nothing.verdict == "unknown"
    assert reason(nothing, "device")[1] == "no data from the device"


def test_offline_never_shows_a_last_known_value_as_yes_or_no() -> None:
    # The daemon stopped while the roller was disinfected, and with a worn roller: neither the
    # green yes nor the red no stands; they are the last known values.
    r = ready(replace(IDLE, roller_uses=10), online=False)
    assert r.verdict == "unknown" and r.headline == "Cannot tell"
    for key in ("disinfected", "rest", "roller", "sensor"):
        ok, text, todo = reason(r, key)
        assert ok is None and text.startswith("last known: ") and todo is None
    assert reason(r, "disinfected")[1] == "last known: disinfected until 09:12 (12 min left)"


def test_the_rest_comes_from_the_device_not_from_another_history() -> None:
    # The device says its last session ended three days ago and any time is allowed: the
    # verdict follows it, whatever a retained summary of another history on the broker says.
    assert reason(ready(), "rest") == (True, "rested 3 days since the last session", None)
    unknown = ready(replace(IDLE, rest_known=False))
    assert reason(unknown, "rest")[0] is None and unknown.verdict == "unknown"


def test_a_last_session_dated_before_the_clock_was_synchronised_is_no_yes() -> None:
    # The device has a last session but cannot measure the rest since it (no real-time clock,
    # not yet synchronised): it publishes no next allowed time, and the page says so.
    r = ready(replace(IDLE, next_allowed_at=None))
    assert r.verdict != "yes"
    ok, text, todo = reason(r, "rest")
    assert ok is None
    assert "cannot be checked" in text and "clock was not synchronised" in text
    assert todo == "wait 24 h 00 min after it yourself"


def test_it_says_which_device_and_history_it_speaks_for() -> None:
    assert ready().about == (
        "Device bathroom: its history holds 4 finished sessions, the last ended 30 Nov 09:00"
    )
    fresh = replace(IDLE, last_session_no=0, last_session_ended_at=None, next_allowed_at=None)
    assert ready(fresh).about == "Device bathroom: no session in its history yet"


def test_during_a_session_it_says_a_session_is_in_progress_and_how_it_started() -> None:
    rolling = replace(
        IDLE, state="in_use", session_no=5, sterile=True, session_sterile_at_start=True,
        session_too_soon=False,
    )  # fmt: skip
    r = ready(rolling)
    assert (r.verdict, r.headline) == ("session", "A session is in progress")
    assert reason(r, "disinfected") == (True, "session 5 started disinfected", None)
    assert reason(r, "rest") == (True, "this session started after a full rest", None)
    unclean = ready(replace(rolling, session_sterile_at_start=False, session_too_soon=True))
    assert unclean.verdict == "session"
    assert reason(unclean, "disinfected")[:2] == (False, "session 5 started without disinfection")
    too_soon = "this session started too soon (the skin needs 24 h 00 min)"
    assert reason(unclean, "rest")[:2] == (False, too_soon)
