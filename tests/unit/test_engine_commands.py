"""Remote commands through the pure engine: each answered once, S11 held, silence bounded."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from dermaguard.config.params import (
    default_case_params,
    default_engine_params,
    default_zero_tracking_params,
)
from dermaguard.core.calibration import Calibration, CalibrationPoint, with_zero
from dermaguard.core.case import DockChanged, LidChanged
from dermaguard.core.engine import TARE_MIN_SAMPLES, TARE_WINDOW_S, Engine
from dermaguard.core.events import (
    Command,
    DeviceState,
    Effect,
    EmitEvent,
    Event,
    ForceRead,
    Priority,
    SaveCalibration,
    SetUv,
    ShowIndicators,
    Tick,
)
from dermaguard.core.filters import Median
from dermaguard.mqtt.topics import COMMANDS

COUNTS_PER_N = 40_000
CAL = Calibration(
    offset=0.0,
    scale_n_per_count=1 / COUNTS_PER_N,
    points=(CalibrationPoint(0.0, 0.0), CalibrationPoint(5 * COUNTS_PER_N, 5.0)),
)


def engine(
    *, silence_s: float = 120.0, auto_start: bool = True, calibration: Calibration = CAL
) -> Engine:
    params = default_engine_params(
        # One lid channel: the second (the microswitch's contact) is test_engine_case's matter.
        case=default_case_params(cycle_s=60.0, auto_start=auto_start, lid_contact=False),
        silence_s=silence_s,
    )
    return Engine(params, calibration, (Median(3),), ())


def events(effects: list[Effect]) -> list[Event]:
    return [x.event for x in effects if isinstance(x, EmitEvent)]


def result(effects: list[Effect]) -> dict[str, Any]:
    found = [e.data for e in events(effects) if e.type == "command_result"]
    assert len(found) == 1, events(effects)
    return dict(found[0])


def feed(e: Engine, t0: float, force_n: float, n: int = 8, offset: int = 0) -> list[Effect]:
    out: list[Effect] = []
    for i in range(n):
        out += e.handle(ForceRead(t0 + i / 80, offset + round(force_n * COUNTS_PER_N)))
    return out


def test_ping_is_answered_ok_with_its_request_id() -> None:
    r = result(engine().handle(Command(1.0, "ping", "abc")))
    assert r == {"command": "ping", "ok": True, "request_id": "abc"}


def test_a_command_the_shell_refused_is_answered_with_its_error() -> None:
    r = result(engine().handle(Command(1.0, "dance", "x", error="unknown command 'dance'")))
    assert r["ok"] is False and r["error"] == "unknown command 'dance'"
    assert r["request_id"] == "x"


def test_sterilize_starts_a_cycle_when_lid_closed_and_docked() -> None:
    e = engine(auto_start=False)
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(0.5, True))
    effects = e.handle(Command(1.0, "sterilize", "s-1"))
    assert effects[0] == SetUv(True)
    assert result(effects) == {
        "command": "sterilize",
        "ok": True,
        "request_id": "s-1",
        "cycle_id": 1,
    }


@pytest.mark.parametrize("name", COMMANDS)
def test_s11_no_command_turns_uv_on_with_the_lid_open(name: str) -> None:
    e = engine(auto_start=False)
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(0.2, False))
    feed(e, 0.5, 0.0)
    effects = e.handle(Command(1.0, name, "r"))
    assert not any(isinstance(x, SetUv) and x.on for x in effects)
    assert not e.case.uv_on
    if name == "sterilize":
        assert result(effects)["ok"] is False


_s11_inputs = st.lists(
    st.one_of(
        # sterilize often, so that cycles start; the lid as often as everything else.
        st.builds(Command, st.just(0.0), st.sampled_from(["sterilize", "sterilize", *COMMANDS])),
        st.builds(LidChanged, st.just(0.0), st.booleans()),
        st.builds(LidChanged, st.just(0.0), st.booleans()),
        st.builds(DockChanged, st.just(0.0), st.booleans()),
        st.builds(Tick, st.just(0.0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    auto_start=st.booleans(),
    inputs=_s11_inputs,
    gaps=st.lists(st.sampled_from([0.0, 0.5, 30.0, 700.0]), min_size=40, max_size=40),
)
def test_s11_uv_is_never_on_with_the_lid_open_whatever_the_commands(
    auto_start: bool,
    inputs: list[Command | LidChanged | DockChanged | Tick],
    gaps: list[float],
) -> None:
    """Every sequence of lid and dock changes (both ways), commands and time: the UV output,
    followed through the ``SetUv`` effects as the shell applies them, is never on while the
    lid is open; opening the lid switches it off in the same step."""
    e = engine(auto_start=auto_start)
    e.handle(DockChanged(0.0, True))  # the roller starts in its dock, the lid open
    lid_closed = False
    uv = False  # the output as the SetUv effects left it
    for effect in e.startup_effects(0.0, 1000.0):
        if isinstance(effect, SetUv):
            uv = effect.on
    t = 0.0
    was_on = False
    for inp, gap in zip(inputs, gaps, strict=False):
        t += gap
        if isinstance(inp, LidChanged):
            lid_closed = inp.closed
        for effect in e.handle(dataclasses.replace(inp, t=t)):
            if isinstance(effect, SetUv):
                assert lid_closed or not effect.on, f"SetUv(True) with the lid open: {inp}"
                uv = effect.on
                was_on = was_on or uv
        assert lid_closed or not uv, f"UV left on with the lid open after {inp}"
    event(f"UV was on: {was_on}")


def over_pressure(e: Engine, t0: float) -> list[Effect]:
    return feed(e, t0, 6.0, n=6)


def test_s11_silence_never_hides_the_visual_alarm() -> None:
    e = engine()
    feed(e, 0.0, 0.0)
    over_pressure(e, 1.0)
    assert e.indicators().alarm is Priority.HIGH
    r = result(e.handle(Command(2.0, "silence", None, {"duration_s": 30})))
    assert r["ok"] is True and r["duration_s"] == 30
    shown = e.indicators()
    # The buzzer is muted; the alarm itself, which the LED shows, is still on and HIGH.
    assert shown.silenced is True
    assert shown.alarm is Priority.HIGH and shown.alarm_reason == "over_pressure"


def test_silence_is_capped_by_the_configured_limit_and_expires() -> None:
    e = engine(silence_s=60.0)
    feed(e, 0.0, 0.0)
    over_pressure(e, 1.0)
    r = result(e.handle(Command(2.0, "silence", None, {"duration_s": 600})))
    assert r["duration_s"] == 60.0
    e.handle(Tick(61.9))
    assert e.indicators().silenced
    effects = e.handle(Tick(62.1))
    shown = [x for x in effects if isinstance(x, ShowIndicators)]
    assert shown and shown[-1].silenced is False and shown[-1].alarm is Priority.HIGH


def test_a_new_over_pressure_episode_sounds_again_after_a_silence() -> None:
    e = engine()
    feed(e, 0.0, 0.0)
    over_pressure(e, 1.0)
    e.handle(Command(2.0, "silence"))
    feed(e, 3.0, 2.0, n=20)  # back in the ok zone: the episode ends
    assert e.indicators().alarm is None
    over_pressure(e, 5.0)
    assert e.indicators().alarm is Priority.HIGH and not e.indicators().silenced


def test_tare_rezeroes_and_keeps_the_calibration_complete() -> None:
    e = engine()
    drift = 3_000  # 0.075 N of zero drift, unloaded: inside the 0.1 N a tare may take as zero
    feed(e, 0.0, 0.0, n=40, offset=drift)
    effects = e.handle(Command(0.6, "tare", "t-1"))
    r = result(effects)
    assert r["ok"] is True and r["shift_n"] == pytest.approx(0.075, abs=1e-3)
    saved = [x.calibration for x in effects if isinstance(x, SaveCalibration)]
    assert len(saved) == 1 and saved[0].is_complete
    assert saved[0].offset == pytest.approx(drift)
    assert saved[0].scale_n_per_count == CAL.scale_n_per_count
    changed = [ev for ev in events(effects) if ev.type == "calibration_changed"]
    assert changed and changed[0].data["request_id"] == "t-1"
    feed(e, 1.0, 0.0, n=10, offset=drift)
    assert e.pressure.force_n == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ("loaded", "loaded"),
        ("no_readings", "no recent readings"),
        ("fault", "sensor fault"),
        ("pinned", "top of its range"),
        ("light_load", "more than the 0.100 N a tare may take as zero"),
    ],
)
def test_tare_is_refused_when_it_would_be_wrong(setup: str, error: str) -> None:
    e = engine()
    e.handle(DockChanged(0.0, True))  # docked: no session starts on contact
    if setup == "loaded":
        feed(e, 0.0, 2.0, n=40)
    elif setup == "light_load":  # below contact, but too much to be zero (check_tare says)
        feed(e, 0.0, 0.2, n=40)
    elif setup in ("fault", "pinned"):
        feed(e, 0.0, 0.0, n=10)
        code = -(2**23) if setup == "fault" else 2**23 - 1  # saturated low or high
        for i in range(10):
            e.handle(ForceRead(0.2 + i / 80, code))
    effects = e.handle(Command(0.6 if setup != "no_readings" else 5.0, "tare"))
    r = result(effects)
    assert r["ok"] is False and error in r["error"]
    assert not any(isinstance(x, SaveCalibration) for x in effects)


def test_new_roller_starts_counting_uses_again() -> None:
    e = engine()
    effects = e.handle(Command(1.0, "new_roller", "n"))
    new = [ev for ev in events(effects) if ev.type == "new_roller"]
    assert new and new[0].data == {"roller_id": 2, "request_id": "n"}
    assert result(effects) == {
        "command": "new_roller",
        "ok": True,
        "request_id": "n",
        "roller_id": 2,
    }
    # Without a request id, the event carries none.
    again = [ev for ev in events(e.handle(Command(2.0, "new_roller"))) if ev.type == "new_roller"]
    assert again and again[0].data == {"roller_id": 3}
    states = [x for x in effects if isinstance(x, DeviceState)]
    assert states and states[-1].roller_id == 2 and states[-1].roller_uses == 0


def test_new_roller_is_refused_during_a_session() -> None:
    e = engine()
    e.handle(DockChanged(0.0, True))
    e.handle(DockChanged(1.0, False))
    feed(e, 2.0, 2.0)
    assert e.sessions.active
    r = result(e.handle(Command(3.0, "new_roller")))
    assert r["ok"] is False and "session" in r["error"]


def test_state_snapshot_is_emitted_on_change_only() -> None:
    e = engine()
    first = [x for x in e.startup_effects(0.0, 1000.0) if isinstance(x, DeviceState)]
    assert len(first) == 1 and first[0].state == "idle"
    assert first[0].force_n is None and first[0].zone is None  # unknown until a sample
    known = [x for x in feed(e, 0.1, 0.0) if isinstance(x, DeviceState)]
    assert len(known) == 1 and known[0].zone == "none"
    assert not [x for x in feed(e, 0.5, 0.01) if isinstance(x, DeviceState)]  # force alone
    changes = [x for x in e.handle(DockChanged(1.0, True)) if isinstance(x, DeviceState)]
    assert len(changes) == 1 and changes[0].state == "docked" and changes[0].docked


@pytest.mark.parametrize("name", COMMANDS)
def test_the_engine_has_a_handler_for_every_command(name: str) -> None:
    error = result(engine().handle(Command(1.0, name, "r"))).get("error") or ""
    assert not error.startswith("unknown command"), error


def test_a_command_the_core_does_not_know_is_refused() -> None:
    """The shell validates names, but the core has its own guard: a name it has no handler for
    is answered "not done", never taken as done."""
    r = result(engine().handle(Command(1.0, "dance", "x")))
    assert r == {
        "command": "dance",
        "ok": False,
        "request_id": "x",
        "error": "unknown command 'dance'",
    }


def test_tare_is_refused_during_a_session() -> None:
    """The roller may be lifted off the skin for a moment in a session: a zero taken then is
    not trusted (tare with the roller unused)."""
    e = engine()
    e.handle(DockChanged(0.0, True))
    e.handle(DockChanged(1.0, False))
    feed(e, 2.0, 2.0)
    feed(e, 3.0, 0.0, n=40)  # lifted: unloaded, the session still open
    assert e.sessions.active and e.pressure.zone == "none"
    effects = e.handle(Command(3.6, "tare"))
    r = result(effects)
    assert r["ok"] is False and "session" in r["error"]
    assert not any(isinstance(x, SaveCalibration) for x in effects)


def _read(e: Engine, times: list[float], codes: list[int]) -> None:
    for t, code in zip(times, codes, strict=True):
        e.handle(ForceRead(t, code))


def test_tare_averages_the_readings_of_the_last_second_ends_included() -> None:
    """A tare takes the readings no older than ``TARE_WINDOW_S`` (one exactly that old
    included) and needs ``TARE_MIN_SAMPLES`` of them; the ``calibration_changed`` event says
    how many it took, the new zero to 0.1 count and the shift to 0.1 mN."""
    assert (TARE_WINDOW_S, TARE_MIN_SAMPLES) == (1.0, 8)
    old = with_zero(CAL, 1000.0, "2026-01-01T00:00:00.000Z")
    e = engine(calibration=old)
    _read(e, [0.5 + k / 8 for k in range(8)], [1000] * 8)  # older than the window: left out
    # 8 readings, the first exactly TARE_WINDOW_S before the tare: mean 4004.375
    _read(e, [1.5 + k / 8 for k in range(8)], [4004, 4005, 4004, 4005, 4004, 4005, 4004, 4004])
    effects = e.handle(Command(2.5, "tare", "t"))
    assert result(effects)["ok"] is True
    [changed] = [ev for ev in events(effects) if ev.type == "calibration_changed"]
    # shift: (4004.375 - 1000) counts at 1/40000 N per count = 0.075109375 N
    assert changed.data == {
        "reason": "tare",
        "offset": 4004.4,
        "shift_n": 0.0751,
        "samples": 8,
        "request_id": "t",
    }
    # One reading fewer in the window (the first one left out) is too few.
    short = engine(calibration=old)
    _read(short, [1.625 + k / 8 for k in range(7)], [4004] * 7)
    r = result(short.handle(Command(2.5, "tare")))
    assert r["ok"] is False and "no recent readings" in r["error"]


def test_tare_averages_at_most_the_last_80_readings() -> None:
    """The engine keeps the last 80 raw readings (a second at the fastest rate the driver
    reads, 80/s): a tare after more readings than that in its window averages those 80."""
    e = engine()
    _read(e, [k / 128 for k in range(257)], [3000] * 257)  # 129 in the last second
    effects = e.handle(Command(2.0, "tare"))
    [changed] = [ev for ev in events(effects) if ev.type == "calibration_changed"]
    assert changed.data["samples"] == 80


def test_a_tare_clears_a_zero_drift_fault_and_says_so() -> None:
    """A drift beyond the zero tracking's range is a sensor fault whose remedy is a tare
    (docs/CARE.md): the tare restarts the tracking, which clears the fault and its alarm, and
    ``sensor_recovered`` says so. A tare with no such fault recovers nothing."""
    params = default_engine_params(
        case=default_case_params(cycle_s=60.0, auto_start=False, lid_contact=False),
        zero_tracking=default_zero_tracking_params(max_total_n=0.05),
    )
    e = Engine(params, CAL, (Median(3),), ())
    e.handle(DockChanged(0.0, True))
    for i in range(2400):  # twenty minutes docked, the zero 0.08 N up
        e.handle(ForceRead(1.0 + i / 2, round(CAL.raw_for(0.08))))
    assert e.zero.fault and e.indicators().alarm_reason == "sensor_fault"
    t = 1201.0
    feed(e, t, 0.0, n=100, offset=round(CAL.raw_for(0.08)))
    effects = e.handle(Command(t + 1.3, "tare", "t-1"))
    assert result(effects)["ok"] is True
    assert [ev.data for ev in events(effects) if ev.type == "sensor_recovered"] == [
        {"after": "zero_drift"}
    ]
    assert not e.zero.fault and e.indicators().alarm is None
    # Tared again, with nothing to recover from.
    feed(e, t + 2.0, 0.0, n=100, offset=round(CAL.raw_for(0.08)))
    again = e.handle(Command(t + 3.3, "tare"))
    assert result(again)["ok"] is True
    assert not [ev for ev in events(again) if ev.type == "sensor_recovered"]
