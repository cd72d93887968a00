"""docs/CARE.md: one row per care default, with the value the schema really has and a source."""

from __future__ import annotations

import math
import re
from pathlib import Path

from dermaguard.config.load import default_config, reference_rows
from dermaguard.config.sections.care import DEEP_NEEDLE_REST_H, HOME_MAX_NEEDLE_MM, REST_BY_NEEDLE_H

ROOT = Path(__file__).resolve().parents[2]
CARE = ROOT / "docs" / "CARE.md"
KEY_VALUE = re.compile(r"`([a-z_][\w.]*): ([^`]+)`")

#: The care defaults docs/CARE.md must give (needle, profile, rest, zones, wear, UV-C, window).
CARE_KEYS = (
    "care.needle_mm",
    "profile",
    "care.min_rest_h",
    "pressure.zones.contact_n",
    "pressure.zones.ok_n",
    "pressure.zones.high_n",
    "pressure.zones.over_n",
    "care.replace_after_uses",
    "case.cycle_min",
    "case.dose_mj_cm2",
    "case.irradiance_mw_cm2",
    "case.validity_after_undock_min",
    "session.passes.lift_n",
    "session.passes.hysteresis_n",
    "session.passes.min_lift_s",
    "session.passes.min_pass_s",
)


def table_rows() -> list[list[str]]:
    lines = CARE.read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| default")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_every_value_in_the_table_is_the_schemas_default() -> None:
    defaults = {row[0]: row[1] for row in reference_rows()}
    stated = [m for row in table_rows() for m in KEY_VALUE.findall(row[1])]
    wrong = [(key, value) for key, value in stated if defaults.get(key) != value.split(" ")[0]]
    assert not wrong, f"docs/CARE.md states values the schema does not have: {wrong}"
    assert set(CARE_KEYS) <= {key for key, _ in stated}


def test_every_row_names_a_source_or_says_engineering_estimate() -> None:
    rows = table_rows()
    assert len(rows) >= len(CARE_KEYS)
    for default, _, source, adjust in rows:
        cited = re.search(r"\b(19|20)\d\d\b", source) or "care article" in source
        assert cited or "Engineering estimate" in source, default
        assert adjust, f"no way to adjust: {default}"


def test_the_rest_rows_follow_the_rest_table() -> None:
    by_row = {row[0]: row[1] for row in table_rows()}
    for limit_mm, hours in REST_BY_NEEDLE_H:
        assert by_row[f"Rest, needles up to {limit_mm} mm"].startswith(f"{hours:g} h")
    deep = by_row[f"Rest, needles over {HOME_MAX_NEEDLE_MM} mm"]
    assert deep.startswith(f"{DEEP_NEEDLE_REST_H:g} h")


def test_the_irradiance_a_timed_cycle_needs_is_stated() -> None:
    case = default_config().case
    needed = math.ceil(case.dose_target_mj_cm2 / case.cycle_s * 1000) / 1000
    assert f"{needed:.3f} mW/cm²" in CARE.read_text(encoding="utf-8")
