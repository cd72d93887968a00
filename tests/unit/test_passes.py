"""Passes: the cut of a force trace into contacts between lifts (core/passes.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.config.load import ConfigError, parse_config
from dermaguard.config.params import (
    default_pass_params,
    default_session_params,
    default_zone_thresholds,
    pass_params,
)
from dermaguard.core.events import Zone
from dermaguard.core.passes import (
    PassParams,
    PassSegmenter,
    segment,
    technique_summary,
)
from dermaguard.core.session import SessionTracker, replay_summary
from dermaguard.core.words import describe_data

P = default_pass_params()  # lift 0.3 N, hysteresis 0.1 N, lift >= 0.3 s, pass >= 0.5 s
DT = 0.125  # exact in binary, so durations at a threshold compare exactly
LIFT_LOW = P.lift_n - P.hysteresis_n  # a contact ends below this

Trace = list[tuple[float, float | None, None]]


def trace(forces: list[float | None], t0: float = 0.0) -> Trace:
    return [(t0 + i * DT, f, None) for i, f in enumerate(forces)]


def press(seconds: float, force: float = 2.0) -> list[float | None]:
    return [force] * round(seconds / DT)


def lift(seconds: float) -> list[float | None]:
    return [0.0] * round(seconds / DT)


# Forces anywhere: lifted, in the band, in contact, unknown.
forces = st.lists(
    st.one_of(st.floats(0.0, 6.0), st.sampled_from([0.0, 0.25, 0.3, 2.0]), st.none()),
    max_size=120,
)


def test_three_presses_between_lifts_are_three_passes() -> None:
    forces = lift(1) + press(2) + lift(1) + press(3, 1.5) + lift(1) + press(1) + lift(1)
    seg = segment(P, trace(forces))
    assert [round(p.duration_s, 6) for p in seg.passes] == [2.0, 3.0, 1.0]
    assert [p.mean_n for p in seg.passes] == pytest.approx([2.0, 1.5, 2.0])
    assert seg.contact_s == pytest.approx(6.0)


def test_a_wobble_shorter_than_min_lift_s_continues_the_pass() -> None:
    wobble = lift(P.min_lift_s - DT)  # one sample off the skin
    seg = segment(P, trace(press(2) + wobble + press(2) + lift(1)))
    assert len(seg.passes) == 1
    assert seg.passes[0].contact_s == pytest.approx(4.0)  # the wobble is no contact


def test_a_touch_shorter_than_min_pass_s_is_contact_but_no_pass() -> None:
    seg = segment(P, trace(lift(1) + press(P.min_pass_s - DT) + lift(1)))
    assert seg.passes == []
    assert seg.contact_s == pytest.approx(P.min_pass_s - DT)


def test_the_live_count_includes_the_running_pass_once_it_is_long_enough() -> None:
    seg = PassSegmenter(P)
    seg.feed(-1.0, 3.0)
    seg.feed(-0.5, 0.0)
    seg.feed(0.0, 0.0)  # a pass of 3 N is over
    assert (seg.count, seg.force_n) == (1, pytest.approx(3.0))
    seg = PassSegmenter(P)
    seg.feed(0.0, 0.4)
    # A pass's first reading says nothing of its force yet (not the last pass's, not 0.4 N).
    assert (seg.pass_open, seg.force_n) == (True, None)
    for t, f, z in trace(press(0.4)):
        seg.feed(t, f, z)
    assert (seg.count, seg.pass_open) == (0, True)
    for t, f, z in trace(press(0.3), t0=0.4):
        seg.feed(t, f, z)
    assert seg.count == 1
    assert seg.force_n == pytest.approx(2.0)


def test_a_pass_records_its_peak_and_highest_zone() -> None:
    samples = [(0.0, 1.0, "ok"), (0.1, 3.5, "high"), (0.2, 4.8, "over"), (0.3, 1.0, "ok")]
    samples += [(0.4 + i * DT, 1.0, "ok") for i in range(5)] + [(1.0, 0.0, "none")]
    seg = segment(P, samples)  # type: ignore[arg-type]
    assert len(seg.passes) == 1
    assert (seg.passes[0].peak_n, seg.passes[0].top_zone) == (4.8, "over")


def test_an_unknown_force_neither_starts_nor_ends_a_contact() -> None:
    seg = segment(P, trace(press(1) + [None] * 5 + press(1) + lift(1)))
    assert len(seg.passes) == 1
    # The intervals held by an unknown force are not contact.
    assert seg.contact_s == pytest.approx(2.0)
    assert seg.passes[0].duration_s == pytest.approx(2.0 + 5 * DT)


def test_summary_median_and_steadiness_of_the_pass_forces() -> None:
    seg = segment(P, trace(press(1, 1.0) + lift(1) + press(1, 2.0) + lift(1) + press(1, 3.0)))
    zone_s = {"light": 0.0, "ok": 2.0, "high": 1.0, "over": 0.0}
    summary = technique_summary(seg.passes, zone_s, 3.0, longest_ok_s=1.0)
    assert summary["passes"] == 3
    assert summary["pass_force_n"] == pytest.approx(2.0)
    assert summary["steadiness_cv"] == pytest.approx(((2 / 3) ** 0.5) / 2.0, abs=1e-4)
    assert summary["zone_share"] == {"light": 0.0, "ok": 0.6667, "high": 0.3333, "over": 0.0}


def test_summary_without_passes_or_contact_says_unknown_not_zero() -> None:
    summary = technique_summary([], {}, 0.0, longest_ok_s=0.0)
    assert summary["passes"] == 0
    assert summary["pass_force_n"] is None
    assert summary["steadiness_cv"] is None
    assert summary["zone_share"] is None


def test_one_pass_has_no_steadiness() -> None:
    seg = segment(P, trace(press(2)))
    assert technique_summary(seg.passes, {"ok": 2.0}, 2.0, 2.0)["steadiness_cv"] is None


def test_the_longest_time_in_ok_is_broken_by_another_zone_and_by_a_gap() -> None:
    seg = PassSegmenter(P)
    zones = ["ok"] * 11 + ["high"] + ["ok"] * 6
    for i, zone in enumerate(zones):
        seg.feed(i * DT, 2.0, zone)  # type: ignore[arg-type]
    seg.feed(5.0, 2.0, "ok")  # a gap of over 3 s: the stretch ended at the last sample
    seg.finish()
    assert seg.longest_ok_s == pytest.approx(11 * DT)


def test_params_refuse_a_lift_below_zero() -> None:
    with pytest.raises(ValueError, match="hysteresis_n"):
        PassParams(lift_n=0.1, hysteresis_n=0.2, min_lift_s=0.3, min_pass_s=0.5)


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(before=forces, after=forces, gap=st.integers(round(P.min_lift_s / DT) + 1, 20))
def test_splitting_a_trace_at_a_lift_never_changes_contact_time_or_passes(
    before: list[float | None], after: list[float | None], gap: int
) -> None:
    """Cut inside a lift at least ``min_lift_s`` long: each half alone gives the same contact
    time and the same passes as the whole, so nothing depends on what came before a lift."""
    whole = trace(before + [0.0] * gap + after)
    cut = len(before) + gap // 2
    first, second = whole[:cut], whole[cut:]
    seg_whole, seg_first, seg_second = segment(P, whole), segment(P, first), segment(P, second)
    assert seg_whole.contact_s == pytest.approx(seg_first.contact_s + seg_second.contact_s)
    assert seg_whole.passes == seg_first.passes + seg_second.passes


@settings(max_examples=80, deadline=None)
@given(
    level=st.floats(LIFT_LOW + 0.01, 6.0),
    noise=st.lists(st.floats(-1.0, 1.0), min_size=round(P.min_pass_s / DT) + 1, max_size=200),
    start=st.floats(P.lift_n, 6.0),
)
def test_a_constant_press_is_one_pass_whatever_the_noise_within_the_band(
    level: float, noise: list[float], start: float
) -> None:
    """Once contact has started, any force that stays at or above the lift threshold less the
    hysteresis is one pass, however it wanders."""
    band = [max(LIFT_LOW, level + n) for n in noise]
    seg = segment(P, trace([*lift(1), start, *band, *lift(1)]))
    assert len(seg.passes) == 1
    assert seg.passes[0].contact_s == pytest.approx((1 + len(band)) * DT)


@settings(max_examples=60, deadline=None)
@given(
    strokes=st.lists(
        st.tuples(
            st.integers(round(P.min_pass_s / DT), 30),  # samples pressed
            st.integers(round(P.min_lift_s / DT) + 1, 15),  # samples lifted
            st.floats(P.lift_n + 0.05, 4.0),  # force of the stroke
            st.floats(0.0, 1.0),  # noise amplitude as a share of the band's room
        ),
        max_size=12,
    ),
    seed=st.integers(0, 2**16),
)
def test_strokes_make_exactly_their_passes_under_noise(
    strokes: list[tuple[int, int, float, float]], seed: int
) -> None:
    """N presses at least ``min_pass_s`` long between lifts at least ``min_lift_s`` long are
    N passes, with any noise that keeps each press above the lift's lower edge and each lift
    below it."""
    import random

    rng = random.Random(seed)
    forces: list[float | None] = lift(0.5)
    for pressed, lifted, force, share in strokes:
        room = (force - LIFT_LOW) * share * 0.99
        forces.append(max(force, P.lift_n))  # the first sample starts the contact
        forces += [force + rng.uniform(-room, room) for _ in range(pressed - 1)]
        forces += [rng.uniform(0.0, LIFT_LOW * 0.99) for _ in range(lifted)]
    seg = segment(P, trace(forces))
    assert len(seg.passes) == len(strokes)


@settings(max_examples=80, deadline=None)
@given(samples=forces)
def test_contact_time_bounds(samples: list[float | None]) -> None:
    """The passes' contact lies within the contact time, which lies within the trace."""
    seg = segment(P, trace(samples))
    span = max(0.0, (len(samples) - 1) * DT)
    assert 0.0 <= sum(p.contact_s for p in seg.passes) <= seg.contact_s + 1e-9
    assert seg.contact_s <= span + 1e-9
    for p in seg.passes:
        assert p.duration_s >= P.min_pass_s - 1e-9
        assert p.contact_s <= p.duration_s + 1e-9


@settings(max_examples=80, deadline=None)
@given(samples=forces)
def test_the_incremental_count_ends_at_the_whole_trace_count(samples: list[float | None]) -> None:
    """The live count never goes down and ends where the cut of the whole trace ends."""
    seg = PassSegmenter(P)
    counts = []
    for t, f, z in trace(samples):
        seg.feed(t, f, z)
        counts.append(seg.count)
    assert counts == sorted(counts)
    seg.finish()
    assert seg.count == len(segment(P, trace(samples)).passes)


# --- the config ---------------------------------------------------------------------------


def test_the_lift_threshold_defaults_to_the_contact_threshold() -> None:
    config = parse_config({"pressure": {"zones": {"contact_n": 0.4}}})
    assert pass_params(config).lift_n == 0.4
    config = parse_config({"session": {"passes": {"lift_n": 0.6}}})
    assert pass_params(config).lift_n == 0.6


def test_a_hysteresis_reaching_below_zero_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"pressure": {"zones": {"contact_n": 0.1}}})
    message = str(info.value)
    assert "session.passes.hysteresis_n: 0.1" in message
    assert "pressure.zones.contact_n" in message


# --- with the session ---------------------------------------------------------------------


def zone_of(force: float | None) -> Zone | None:
    return None if force is None else default_zone_thresholds().plain_zone(force)


def test_the_session_summary_carries_the_technique() -> None:
    tracker = SessionTracker(default_session_params())
    tracker.undocked(0.0)
    tracker.contact(1.0, 1e9, True, None)
    forces = press(2, 2.0) + lift(1) + press(2, 3.5) + lift(1) + press(2, 2.0) + lift(1)
    for t, f, _ in trace(forces, t0=1.0):
        tracker.sample(t, f, zone_of(f))
    assert tracker.current is not None and tracker.current.segmenter is not None
    assert tracker.current.segmenter.count == 3
    (ended,) = tracker.docked(1.0 + len(forces) * DT, 1e9 + 10)
    technique = ended.data["technique"]
    assert technique["passes"] == 3
    assert technique["passes_high"] == 1 and technique["passes_over"] == 0
    assert technique["pass_force_n"] == pytest.approx(2.0)
    assert technique["longest_ok_s"] == pytest.approx(2.0)
    assert technique["zone_share"]["high"] == pytest.approx(1 / 3, abs=1e-3)


def test_a_replayed_summary_leaves_the_technique_unknown() -> None:
    start = {"session_no": 4, "roller_id": 1, "roller_use": 2}
    samples = [(t, f, zone_of(f)) for t, f, _ in trace(press(2) + lift(1))]
    summary = replay_summary(
        start,
        samples,
        started_wall=1e9,
        duration_s=3.0,
        over_episodes=0,
        longest_over_s=0.0,
        reason="interrupted",
    )
    assert summary["technique"] is None
    assert summary["contact_s"] > 0


def test_the_terminal_line_of_a_session_says_its_passes() -> None:
    data = {
        "session_no": 3,
        "end_reason": "docked",
        "duration_s": 130.4,
        "contact_s": 92.2,
        "over_episodes": 0,
        "technique": {"passes": 46},
    }
    assert describe_data("session_ended", data) == (
        "session 3 ended (docked): 130 s, 92 s in contact, 46 passes, 0 over-pressure episode(s)"
    )
    one = describe_data("session_ended", {**data, "technique": {"passes": 1}})
    assert "in contact, 1 pass, 0 over-pressure" in one
    old = describe_data("session_ended", {**data, "technique": None})
    assert "passes" not in old and old.startswith("session 3 ended (docked): 130 s")
