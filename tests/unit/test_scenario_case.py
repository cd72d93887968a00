"""Scenario files: the case events and the initial case state, and their error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dermaguard.sim.scenario import (
    CaseEvent,
    CaseInitial,
    ScenarioError,
    load_scenario,
    parse_scenario,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def errors(data: Any) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    return info.value.errors


def test_case_events_parse_sorted_by_time() -> None:
    s = parse_scenario(
        {
            "initial": {"lid": "closed", "dock": "in"},
            "case": [
                {"t": 9, "uv_sensor": "ok"},
                {"t": 5, "lid": "open"},
                {"t": 6, "dock": "out"},
                {"t": 7, "sterilize": True},
                {"t": 8, "uv_sensor": "dark"},
            ],
            "force": [{"t": 0, "n": 0}, {"t": 10, "n": 0}],
        }
    )
    assert s.initial == CaseInitial("closed", "in")
    assert s.initial.lid_closed and s.initial.docked
    assert s.case == (
        CaseEvent(5.0, "lid", "open"),
        CaseEvent(6.0, "dock", "out"),
        CaseEvent(7.0, "sterilize", "request"),
        CaseEvent(8.0, "uv_sensor", "dark"),
        CaseEvent(9.0, "uv_sensor", "ok"),
    )


def test_without_case_keys_the_case_is_open_with_the_roller_out() -> None:
    s = parse_scenario({"force": [{"t": 0, "n": 1}, {"t": 5, "n": 1}]})
    assert s.initial == CaseInitial() and not s.initial.lid_closed and not s.initial.docked
    assert s.case == ()


def test_a_case_only_scenario_needs_no_force_and_lasts_until_its_last_event() -> None:
    s = parse_scenario({"case": [{"t": 3, "lid": "closed"}, {"t": 12, "lid": "open"}]})
    assert s.keyframes == ((0.0, 0.0),) and s.duration_s == 12.0
    assert s.force_at(5.0) == 0.0


def test_yaml_spelling_of_the_documented_forms() -> None:
    text = (
        "initial: {lid: open, dock: in}\n"
        "case:\n  - {t: 5, dock: out}\n  - {t: 6, sterilize: true}\n"
    )
    s = parse_scenario(yaml.safe_load(text))
    assert s.case == (CaseEvent(5.0, "dock", "out"), CaseEvent(6.0, "sterilize", "request"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"case": "lid"}, "case: must be a list such as [{t: 2, lid: closed}]"),
        ({"case": [3]}, "case[0]: 3 is not allowed: must be a mapping such as {t: 2, lid: closed}"),
        ({"case": [{"t": 1}]}, "case[0]: needs exactly one of lid, dock, sterilize, uv_sensor"),
        (
            {"case": [{"t": 1, "lid": "open", "dock": "in"}]},
            "case[0]: needs exactly one of lid, dock, sterilize, uv_sensor (got lid, dock)",
        ),
        (
            {"case": [{"t": 1, "lid": "shut"}]},
            "case[0].lid: 'shut' is not allowed: must be closed or open",
        ),
        (
            {"case": [{"t": 1, "dock": True}]},
            "case[0].dock: True is not allowed: must be in or out",
        ),
        (
            {"case": [{"t": 1, "sterilize": "yes"}]},
            "case[0].sterilize: 'yes' is not allowed: must be true",
        ),
        (
            {"case": [{"t": 1, "uv_sensor": "broken"}]},
            "case[0].uv_sensor: 'broken' is not allowed: must be dark or ok",
        ),
        ({"case": [{"t": -1, "lid": "open"}]}, "case[0].t: -1 is not allowed: must be >= 0"),
        ({"case": [{"lid": "open"}]}, "case[0].t: None is not allowed: must be a number"),
        (
            {"case": [{"t": 1, "lid": "open", "door": 1}]},
            "case[0].door: unknown key (allowed: dock, lid, sterilize, t, uv_sensor)",
        ),
        (
            {"case": [{"t": 20, "lid": "open"}], "duration_s": 10},
            "case[0].t: 20 is not allowed: must be <= duration_s (10)",
        ),
        (
            {"initial": "closed", "case": [{"t": 1, "lid": "open"}]},
            "initial: must be a mapping such as {lid: open, dock: in}",
        ),
        (
            {"initial": {"lid": "ajar"}, "case": [{"t": 1, "lid": "open"}]},
            "initial.lid: 'ajar' is not allowed: must be closed or open",
        ),
        (
            {"initial": {"roller": "in"}, "case": [{"t": 1, "lid": "open"}]},
            "initial.roller: unknown key (allowed: dock, lid)",
        ),
    ],
)
def test_each_case_mistake_names_its_key_path(data: dict[str, Any], message: str) -> None:
    assert errors(data) == [message]


def test_all_mistakes_are_reported_at_once() -> None:
    found = errors(
        {
            "initial": {"dock": "maybe"},
            "case": [{"t": 1, "lid": "shut"}, {"t": 2}],
            "force": [{"t": 0, "n": 0}, {"t": 5, "n": 0}],
        }
    )
    assert found == [
        "initial.dock: 'maybe' is not allowed: must be in or out",
        "case[0].lid: 'shut' is not allowed: must be closed or open",
        "case[1]: needs exactly one of lid, dock, sterilize, uv_sensor",
    ]


@pytest.mark.parametrize(
    ("name", "docked", "kinds"),
    [
        ("sterilize_then_use", True, {"lid", "dock"}),
        ("unsterile_use", True, {"dock"}),
        ("lid_opened_mid_cycle", True, {"lid", "dock"}),
    ],
)
def test_shipped_case_scenarios_load(name: str, docked: bool, kinds: set[str]) -> None:
    s = load_scenario(SCENARIOS / f"{name}.yaml")
    assert s.name == name and s.description
    assert s.initial.docked is docked and not s.initial.lid_closed
    assert {e.kind for e in s.case} == kinds
    assert all(e.t <= s.duration_s for e in s.case)
