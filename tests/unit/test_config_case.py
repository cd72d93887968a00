"""The case's configuration: pins, the `case` section, and the rules across them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dermaguard.config.load import ConfigError, default_config, parse_config, reference_rows
from dermaguard.config.params import case_params
from dermaguard.core.case import CaseParams
from dermaguard.core.engine import EngineParams
from dermaguard.core.pressure import PressureParams
from dermaguard.core.session import SessionParams
from dermaguard.core.zones import ZoneThresholds


def errors_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def test_case_defaults_follow_docs_care() -> None:
    c = default_config()
    assert (c.pins.lid, c.pins.dock, c.pins.uv_led, c.pins.uv_sensor) == (23, 24, 25, None)
    case = c.case
    assert (case.cycle_min, case.cycle_s, case.auto_start) == (10.0, 600.0, True)
    # 15 min: uncovered sterile trays were contaminated within 30 min to 1 h in an operating
    # room (docs/CARE.md), and a bathroom is worse.
    assert (case.validity_after_undock_min, case.validity_after_undock_s) == (15.0, 900.0)
    assert case.uv_confirm_s == 5.0
    # 40 mJ/cm² at the least-exposed needle, used only once a measured irradiance is set.
    assert (case.irradiance_mw_cm2, case.dose_mj_cm2) == (None, 40.0)
    assert not case_params(c).dose_mode
    assert (case.lid_active_low, case.dock_active_low, case.uv_active_high) == (True,) * 3
    assert (case.debounce_ms, case.debounce_s) == (20, 0.02)


def test_a_dose_with_a_sensor_is_accepted() -> None:
    c = parse_config(
        {"pins": {"uv_sensor": 26}, "case": {"irradiance_mw_cm2": 0.5, "dose_mj_cm2": 150}}
    )
    assert case_params(c).dose_mode and c.pins.uv_sensor == 26


def test_an_irradiance_alone_turns_on_dose_mode_at_the_default_dose() -> None:
    c = parse_config({"pins": {"uv_sensor": 26}, "case": {"irradiance_mw_cm2": 0.0667}})
    assert case_params(c).dose_mode and c.case.dose_target_mj_cm2 == 40.0
    # At the irradiance docs/CARE.md names, the default dose takes the 10-minute cycle.
    assert case_params(c).length_s == pytest.approx(600.0, rel=1e-3)


def test_a_null_dose_from_an_older_example_file_means_the_default() -> None:
    old_timed = parse_config({"case": {"irradiance_mw_cm2": None, "dose_mj_cm2": None}})
    assert not case_params(old_timed).dose_mode and old_timed.case.dose_target_mj_cm2 == 40.0
    with_sensor = parse_config(
        {"pins": {"uv_sensor": 26}, "case": {"irradiance_mw_cm2": 0.1, "dose_mj_cm2": None}}
    )
    assert case_params(with_sensor).dose_mj_cm2 == 40.0


#: Core parameters that are not config keys but constants of the algorithm.
CORE_CONSTANTS = {"cap_margin"}


@pytest.mark.parametrize(
    "params", [ZoneThresholds, PressureParams, CaseParams, SessionParams, EngineParams]
)
def test_the_core_has_no_defaults_to_disagree_with_the_configs(params: type) -> None:
    fields = dataclasses.fields(params)
    defaulted = {
        f.name
        for f in fields
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    assert defaulted <= CORE_CONSTANTS


RULES: list[tuple[dict[str, Any], str]] = [
    ({"case": {"cycle_min": 0.5}}, "case.cycle_min: 0.5 is not allowed: must be >= 1 and <= 60"),
    ({"case": {"cycle_min": 61}}, "case.cycle_min: 61 is not allowed: must be >= 1 and <= 60"),
    (
        {"case": {"validity_after_undock_min": 241}},
        "case.validity_after_undock_min: 241 is not allowed: must be >= 1 and <= 240",
    ),
    ({"case": {"uv_confirm_s": 0}}, "case.uv_confirm_s: 0 is not allowed: must be >= 1 and <= 60"),
    (
        {"case": {"debounce_ms": 501}},
        "case.debounce_ms: 501 is not allowed: must be >= 0 and <= 500",
    ),
    (
        {"case": {"auto_start": "yes"}},
        "case.auto_start: 'yes' is not allowed: must be true or false",
    ),
    (
        {"case": {"irradiance_mw_cm2": 0}},
        "case.irradiance_mw_cm2: 0 is not allowed: must be > 0",
    ),
    (
        {"pins": {"uv_sensor": 26}, "case": {"dose_mj_cm2": 100}},
        "case.dose_mj_cm2: 100.0 is not allowed: needs case.irradiance_mw_cm2 too "
        "(a dose is reached at a measured irradiance; without one the cycle is timed)",
    ),
    (
        {"case": {"irradiance_mw_cm2": 0.5, "dose_mj_cm2": 150}},
        "case.irradiance_mw_cm2: 0.5 is not allowed: "
        "needs pins.uv_sensor (a dose is measured by it)",
    ),
    (
        {"case": {"irradiance_mw_cm2": 0.5}},
        "case.irradiance_mw_cm2: 0.5 is not allowed: "
        "needs pins.uv_sensor (a dose is measured by it)",
    ),
    (
        {"pins": {"uv_sensor": 26}, "case": {"irradiance_mw_cm2": 1, "dose_mj_cm2": 30}},
        "case.dose_mj_cm2: 30.0 is not allowed: takes 30 s at case.irradiance_mw_cm2 (1); "
        "a cycle must take 1 to 60 min, so at this irradiance the dose must be at least 60",
    ),
    (
        {"pins": {"uv_sensor": 26}, "case": {"irradiance_mw_cm2": 2}},
        "case.dose_mj_cm2: 40.0 is not allowed: takes 20 s at case.irradiance_mw_cm2 (2); "
        "a cycle must take 1 to 60 min, so at this irradiance the dose must be at least 120",
    ),
    (
        {"pins": {"uv_sensor": 26}, "case": {"irradiance_mw_cm2": 0.005}},
        "case.dose_mj_cm2: 40.0 is not allowed: takes 8000 s at case.irradiance_mw_cm2 (0.005); "
        "a cycle must take 1 to 60 min, and this irradiance gives at most 18 in 60 min",
    ),
    (
        {"pins": {"uv_sensor": 23}},
        "pins.uv_sensor: 23 is not allowed: GPIO23 is already used by pins.lid",
    ),
    (
        {"pins": {"uv_led": 18}},
        "pins.uv_led: 18 is not allowed: GPIO18 is already used by pins.buzzer",
    ),
    ({"pins": {"lid": 30}}, "pins.lid: 30 is not allowed: must be >= 0 and <= 27"),
    (
        {"pins": {"lid_contact": 23}},
        "pins.lid_contact: 23 is not allowed: GPIO23 is already used by pins.lid",
    ),
    (
        {"case": {"lid_mismatch_ms": 10}},
        "case.lid_mismatch_ms: 10 is not allowed: must be >= 50 and <= 5000",
    ),
]


@pytest.mark.parametrize(("data", "message"), RULES, ids=[m.split(":")[0] for _, m in RULES])
def test_each_case_rule_names_path_value_and_what_is_allowed(
    data: dict[str, Any], message: str
) -> None:
    assert errors_of(data) == [message]


def test_the_reference_documents_the_case() -> None:
    rows = {row[0]: row for row in reference_rows()}
    assert rows["case.cycle_min"][1:3] == ("10.0", "number >= 1 and <= 60")
    assert rows["pins.uv_sensor"][1:3] == ("null", "integer >= 0 and <= 27, or null")
    assert rows["case.validity_after_undock_min"][1] == "15.0"
    assert rows["case.dose_mj_cm2"][1:3] == ("40.0", "number > 0, or null")
    assert "at once" in rows["case.debounce_ms"][3]
