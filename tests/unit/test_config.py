"""The configuration: defaults, every rule's message, file handling, and that nothing but a
ConfigError ever escapes, whatever the data."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dermaguard.config import fields as config_fields
from dermaguard.config import reference as config_reference
from dermaguard.config import validate as config_validate
from dermaguard.config.fields import meta
from dermaguard.config.load import (
    Config,
    ConfigError,
    FilterSpec,
    PinsConfig,
    config_to_data,
    default_config,
    example_config_text,
    load_config,
    parse_config,
    reference_rows,
)

SECTIONS = (
    "device_id, profile, state_dir, log_level, pins, hx711, load_cell, calibration, pressure, "
    "alarm, case, care, session, mqtt, web"
)


def errors_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def nested(path: str, value: object) -> dict[str, Any]:
    """{'a': {'b': value}} from 'a.b'."""
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return dict(out)


# --- defaults and the example file ----------------------------------------------------------


def test_defaults_follow_the_design() -> None:
    c = default_config()
    assert (c.device_id, c.profile, c.state_dir, c.log_level) == (
        "dermaguard",
        "home",
        None,
        "info",
    )
    assert dataclasses.astuple(c.pins) == (5, 6, None, 17, 27, 22, 18, 23, 16, 24, 25, None)
    assert (c.hx711.rate_sps, c.hx711.gain, c.hx711.ready_timeout_periods) == (80, 128, 3)
    assert c.hx711.interface == "spi"
    assert dataclasses.astuple(c.hx711.spi) == (0, 0, 1_000_000, 0)
    assert c.hx711.max_clock_high_us == 50.0
    assert c.load_cell.capacity_n == 50.0
    assert c.calibration.file == "calibration.json"
    z = c.pressure.zones
    assert (z.contact_n, z.ok_n, z.high_n, z.over_n, z.hysteresis_n) == (0.3, 1.0, 3.0, 4.5, 0.2)
    assert z.dwell_samples == 3
    assert c.pressure.filters == (FilterSpec("median", window=3), FilterSpec("ema", alpha=0.5))
    assert (c.pressure.invalid_samples_for_fault, c.pressure.valid_samples_for_recovery) == (3, 3)
    assert (c.alarm.buzzer, c.alarm.led_active_high, c.alarm.buzzer_active_high) == (True,) * 3


@pytest.mark.parametrize("data", [None, {}, {"pins": None, "pressure": {"zones": None}}])
def test_empty_data_and_empty_sections_mean_defaults(data: object) -> None:
    assert parse_config(data) == default_config()


def test_load_config_none_gives_defaults() -> None:
    assert load_config(None) == default_config()


def test_example_file_parses_to_the_defaults(tmp_path: Path) -> None:
    text = example_config_text()
    assert parse_config(yaml.safe_load(text)) == default_config()
    (tmp_path / "example.yaml").write_text(text, encoding="utf-8")
    assert load_config(tmp_path / "example.yaml") == default_config()


def _leaf_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        paths |= _leaf_paths(value, path) if isinstance(value, dict) else {path}
    return paths


def test_example_file_shows_every_key() -> None:
    in_example = _leaf_paths(yaml.safe_load(example_config_text()))
    documented = {row[0] for row in reference_rows() if row[2] != "mapping" and "[]" not in row[0]}
    assert in_example == documented


def test_reference_documents_every_key() -> None:
    rows = reference_rows()
    paths = [row[0] for row in rows]
    assert len(paths) == len(set(paths))
    assert all(doc.strip() and allowed.strip() for _, _, allowed, doc in rows)
    by_path = {row[0]: row for row in rows}
    assert by_path["hx711.gain"][1:3] == ("128", "128, 64, 32")
    assert by_path["pressure.filters"][1] == "[{median: {window: 3}}, {ema: {alpha: 0.5}}]"
    assert "cannot be disabled" in by_path["alarm.buzzer"][3]
    assert by_path["state_dir"][1:3] == ("null", "a non-empty path, or null")


def test_config_to_data_round_trips() -> None:
    config = parse_config({"pressure": {"filters": [{"moving_average": {"window": 8}}]}})
    assert parse_config(config_to_data(config)) == config


# --- one message per rule -------------------------------------------------------------------

RULES = [
    (
        {"pressure": {"zones": {"over_n": -2}}},
        "pressure.zones.over_n: -2.0 is not allowed: must be > pressure.zones.high_n (3.0)",
    ),
    (
        {"pressure": {"zones": {"ok_n": 0.3}}},
        "pressure.zones.ok_n: 0.3 is not allowed: must be > pressure.zones.contact_n (0.3)",
    ),
    (
        {"pressure": {"zones": {"high_n": 0.5}}},
        "pressure.zones.high_n: 0.5 is not allowed: must be > pressure.zones.ok_n (1.0)",
    ),
    (
        {"pressure": {"zones": {"contact_n": 0}}},
        "pressure.zones.contact_n: 0 is not allowed: must be > 0",
    ),
    (
        {"pressure": {"zones": {"over_n": 50}}},
        "pressure.zones.over_n: 50.0 is not allowed: must be < load_cell.capacity_n (50.0)",
    ),
    (
        {"load_cell": {"capacity_n": 4}},
        "pressure.zones.over_n: 4.5 is not allowed: must be < load_cell.capacity_n (4.0)",
    ),
    (
        {"pressure": {"zones": {"hysteresis_n": 0.7}}},
        "pressure.zones.hysteresis_n: 0.7 is not allowed: must be < 0.7, the smallest gap between "
        "thresholds (pressure.zones.contact_n to pressure.zones.ok_n)",
    ),
    (
        {"pressure": {"zones": {"hysteresis_n": -0.1}}},
        "pressure.zones.hysteresis_n: -0.1 is not allowed: must be >= 0",
    ),
    (
        {"pressure": {"zones": {"dwell_samples": 0}}},
        "pressure.zones.dwell_samples: 0 is not allowed: must be >= 1 and <= 80",
    ),
    (
        {"pressure": {"invalid_samples_for_fault": 81}},
        "pressure.invalid_samples_for_fault: 81 is not allowed: must be >= 1 and <= 80",
    ),
    (
        {"pressure": {"valid_samples_for_recovery": 0}},
        "pressure.valid_samples_for_recovery: 0 is not allowed: must be >= 1 and <= 80",
    ),
    ({"hx711": {"gain": 100}}, "hx711.gain: 100 is not allowed: must be one of 128, 64, 32"),
    ({"hx711": {"rate_sps": 40}}, "hx711.rate_sps: 40 is not allowed: must be one of 10, 80"),
    (
        {"hx711": {"ready_timeout_periods": 1}},
        "hx711.ready_timeout_periods: 1 is not allowed: must be >= 2 and <= 10",
    ),
    (
        {"hx711": {"max_clock_high_us": 61}},
        "hx711.max_clock_high_us: 61 is not allowed: must be >= 5 and <= 60",
    ),
    (
        {"load_cell": {"capacity_n": 0}},
        "load_cell.capacity_n: 0 is not allowed: must be > 0 and <= 2000",
    ),
    (
        {"pins": {"buzzer": 17}},
        "pins.buzzer: 17 is not allowed: GPIO17 is already used by pins.led_red",
    ),
    ({"pins": {"led_blue": 28}}, "pins.led_blue: 28 is not allowed: must be >= 0 and <= 27"),
    (
        {"device_id": "Living Room"},
        "device_id: 'Living Room' is not allowed: must be 1 to 64 of a-z 0-9 _ -, "
        "starting with a letter or digit",
    ),
    (
        {"profile": "hom"},
        "profile: 'hom' is not allowed: must be one of home, clinic (did you mean 'home'?)",
    ),
    (
        {"log_level": "INFO"},
        "log_level: 'INFO' is not allowed: must be one of debug, info, warning, error "
        "(did you mean 'info'?)",
    ),
    ({"state_dir": ""}, "state_dir: '' is not allowed: must be a non-empty path"),
    (
        {"calibration": {"file": "  "}},
        "calibration.file: '  ' is not allowed: must be a non-empty path",
    ),
    (
        {"pressure": {"filters": [{"ema": {"alpha": 0.3}}, {"median": {"window": 5}}]}},
        "pressure.filters[1].median: spike-rejection filters must come before smoothing filters",
    ),
    (
        {"pressure": {"filters": [{"median": {"window": 4}}]}},
        "pressure.filters[0].median.window: 4 is not allowed: must be odd",
    ),
    (
        {"pressure": {"filters": [{"median": {"window": 11}}]}},
        "pressure.filters[0].median.window: 11 is not allowed: must be >= 3 and <= 9",
    ),
    (
        {"pressure": {"filters": [{"moving_average": {"window": 1}}]}},
        "pressure.filters[0].moving_average.window: 1 is not allowed: must be >= 2 and <= 50",
    ),
    (
        {"pressure": {"filters": [{"ema": {"alpha": 0}}]}},
        "pressure.filters[0].ema.alpha: 0 is not allowed: must be > 0 and <= 1",
    ),
    (
        {"pressure": {"filters": [{"median": None}, {"medain": None}]}},
        "pressure.filters[1].medain: unknown key (did you mean 'median'?)",
    ),
    (
        {"pressure": {"filters": [{"median": None, "ema": None}]}},
        "pressure.filters[0]: {median: null, ema: null} is not allowed: "
        "must be a mapping with one key: median, moving_average, ema",
    ),
    (
        {"pressure": {"filters": "median"}},
        "pressure.filters: 'median' is not allowed: must be a list ([] for none)",
    ),
    (
        {"pressure": {"filters": [{"ema": 0.3}]}},
        "pressure.filters[0].ema: 0.3 is not allowed: must be a mapping",
    ),
]


@pytest.mark.parametrize(("data", "message"), RULES, ids=[m.split(":")[0] for _, m in RULES])
def test_each_rule_names_path_value_and_what_is_allowed(data: object, message: str) -> None:
    assert errors_of(data) == [message]


def test_every_later_duplicate_pin_names_the_first_user() -> None:
    assert errors_of({"pins": {"led_blue": 12, "buzzer": 12, "lid": 12}}) == [
        "pins.buzzer: 12 is not allowed: GPIO12 is already used by pins.led_blue",
        "pins.lid: 12 is not allowed: GPIO12 is already used by pins.led_blue",
    ]


def test_with_spi_the_gpio_interface_pins_are_free_and_a_duplicate_names_the_first_user() -> None:
    assert parse_config({"pins": {"led_blue": 5, "buzzer": 6}}).pins.buzzer == 6
    assert errors_of({"pins": {"led_blue": 6, "hx711_ready": 6}}) == [
        "pins.hx711_ready: 6 is not allowed: GPIO6 is already used by pins.led_blue",
    ]


def test_with_gpio_the_hx711_pins_must_not_collide_with_the_rest() -> None:
    assert errors_of({"pins": {"led_blue": 5}, "hx711": {"interface": "gpio"}}) == [
        "pins.hx711_dout: 5 is not allowed: GPIO5 is already used by pins.led_blue",
    ]
    # ... and may then use SPI0's pins, which belong to no bus.
    assert (
        parse_config({"pins": {"led_red": 10}, "hx711": {"interface": "gpio"}}).pins.led_red == 10
    )


@pytest.mark.parametrize("name", ["led_red", "buzzer", "uv_sensor", "hx711_ready"])
@pytest.mark.parametrize(("gpio", "line"), [(7, "CE1"), (8, "CE0"), (9, "MISO"), (11, "SCLK")])
def test_with_spi_no_pin_may_sit_on_the_bus(name: str, gpio: int, line: str) -> None:
    assert errors_of({"pins": {name: gpio}}) == [
        f"pins.{name}: {gpio} is not allowed: GPIO{gpio} is SPI0's {line} while "
        "hx711.interface is spi (GPIO 7-11 belong to the bus); move it, or use interface gpio"
    ]


@pytest.mark.parametrize(("hz", "bit_us"), [(19_999, 50), (1_000, 1000)])
def test_a_bus_clock_whose_bit_outlasts_50_us_is_refused_with_why(hz: int, bit_us: int) -> None:
    assert errors_of({"hx711": {"spi": {"hz": hz}}}) == [
        f"hx711.spi.hz: {hz} is not allowed: its bit time, {bit_us} µs, exceeds 50 µs: each "
        "PD_SCK pulse lasts one bit and the HX711 powers down after 60 µs"
    ]


@pytest.mark.parametrize("hz", [20_000, 1_000_000, 5_000_000])
def test_bus_clocks_from_20_khz_to_5_mhz_are_allowed(hz: int) -> None:
    assert parse_config({"hx711": {"spi": {"hz": hz}}}).hx711.spi.hz == hz


def test_pins_may_be_swapped() -> None:
    config = parse_config({"pins": {"led_red": 18, "buzzer": 17}})
    assert (config.pins.led_red, config.pins.buzzer) == (18, 17)


def test_threshold_order_reports_each_broken_pair() -> None:
    assert errors_of({"pressure": {"zones": {"ok_n": 0.2, "high_n": 0.1}}}) == [
        "pressure.zones.ok_n: 0.2 is not allowed: must be > pressure.zones.contact_n (0.3)",
        "pressure.zones.high_n: 0.1 is not allowed: must be > pressure.zones.ok_n (0.2)",
    ]


# --- filters ---------------------------------------------------------------------------------


def test_filters_parse_in_order_with_default_parameters() -> None:
    data = {
        "filters": [
            {"median": None},
            {"median": {"window": 5}},
            {"moving_average": {}},
            {"ema": None},
        ]
    }
    pressure = parse_config({"pressure": data}).pressure
    assert pressure.filters == (
        FilterSpec("median", window=3),
        FilterSpec("median", window=5),
        FilterSpec("moving_average", window=4),
        FilterSpec("ema", alpha=0.5),
    )
    assert pressure.spike_filters == pressure.filters[:2]
    assert pressure.smoothing_filters == pressure.filters[2:]


def test_an_empty_filter_list_means_no_filtering() -> None:
    pressure = parse_config({"pressure": {"filters": []}}).pressure
    assert pressure.filters == pressure.spike_filters == pressure.smoothing_filters == ()


# --- unknown keys and types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pressure": {"zonez": {}}}, "pressure.zonez: unknown key (did you mean 'zones'?)"),
        ({"pins": {"buzer": 4}}, "pins.buzer: unknown key (did you mean 'buzzer'?)"),
        (
            {"pressure": {"zones": {"over": 4}}},
            "pressure.zones.over: unknown key (did you mean 'over_n'?)",
        ),
        (
            {"pressure": {"filters": [{"median": {"windw": 3}}]}},
            "pressure.filters[0].median.windw: unknown key (did you mean 'window'?)",
        ),
        ({"devce_id": "x"}, "devce_id: unknown key (did you mean 'device_id'?)"),
        ({"mqttt": {}}, "mqttt: unknown key (did you mean 'mqtt'?)"),
        ({3: 1}, f"3: unknown key (allowed: {SECTIONS})"),
        ({"load_cell": {"x": 1}}, "load_cell.x: unknown key (allowed: capacity_n)"),
    ],
)
def test_unknown_keys_are_errors_at_every_level(data: object, message: str) -> None:
    assert errors_of(data) == [message]


TYPE_ERRORS = [
    ("load_cell.capacity_n", "fifty", "must be a number > 0 and <= 2000"),
    ("load_cell.capacity_n", False, "must be a number > 0 and <= 2000"),
    ("hx711.ready_timeout_periods", True, "must be an integer >= 2 and <= 10"),
    ("hx711.ready_timeout_periods", 3.0, "must be an integer >= 2 and <= 10"),
    ("hx711.gain", True, "must be one of 128, 64, 32"),
    ("pins.buzzer", None, "must be an integer >= 0 and <= 27"),
    ("pressure.zones.over_n", [4.5], "must be a number"),
    ("pressure.zones.over_n", math.inf, "must be a finite number"),
    ("pressure.zones.hysteresis_n", math.nan, "must be a finite number >= 0"),
    ("pressure.zones.dwell_samples", 10**5000, "must be >= 1 and <= 80"),
    ("alarm.buzzer", 1, "must be true or false"),
    ("alarm.buzzer", "yes", "must be true or false"),
    ("device_id", 123, "must be a string"),
    ("state_dir", 5, "must be a string or null"),
    ("pins", [5, 6], "must be a mapping"),
    ("pressure.zones", "strict", "must be a mapping"),
    ("pressure.filters", {"median": None}, "must be a list ([] for none)"),
]


@pytest.mark.parametrize(
    ("path", "value", "requirement"),
    TYPE_ERRORS,
    ids=[f"{path}-{type(value).__name__}" for path, value, _ in TYPE_ERRORS],
)
def test_type_errors(path: str, value: object, requirement: str) -> None:
    [message] = errors_of(nested(path, value))
    assert message.startswith(f"{path}: ")
    assert message.endswith(f" is not allowed: {requirement}")


def test_a_number_yaml_reads_as_text_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "dg.yaml"
    path.write_text("load_cell:\n  capacity_n: 1e3\npins:\n  buzzer: '4'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        "load_cell.capacity_n: '1e3' is not allowed: must be a number > 0 and <= 2000 "
        "(read as text; write 1000.0)",
        "pins.buzzer: '4' is not allowed: must be an integer >= 0 and <= 27 "
        "(read as text; write 4)",
    ]


def test_text_yaml_reads_as_a_number_gets_a_hint_to_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "dg.yaml"
    path.write_text("mqtt:\n  version: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        "mqtt.version: 5 is not allowed: must be one of 5, 3.1.1 (read as a number; write it "
        'quoted: "5")'
    ]


def test_an_int_is_accepted_for_a_float_and_stored_as_float() -> None:
    zones = parse_config({"pressure": {"zones": {"over_n": 4, "hysteresis_n": 0}}}).pressure.zones
    assert zones.over_n == 4.0 and type(zones.over_n) is float
    assert type(zones.hysteresis_n) is float


def test_long_values_are_shortened_in_messages() -> None:
    [message] = errors_of({"device_id": "x" * 500})
    assert len(message) < 200 and message.startswith("device_id: 'xxx")


@pytest.mark.parametrize("data", [[1, 2], "pins", 42])
def test_a_top_level_that_is_not_a_mapping_is_an_error(data: object) -> None:
    [message] = errors_of(data)
    assert message.startswith("top level: ") and message.endswith("must be a mapping")


# --- collecting every error -----------------------------------------------------------------


def test_all_errors_are_collected_in_one_pass() -> None:
    data = {
        "profile": "salon",
        "pins": {"buzzer": 17},
        "hx711": {"gain": 100, "rate_sps": "fast", "samples": 3},
        "pressure": {"zones": {"high_n": 5.0}, "filters": [{"ema": None}, {"median": None}]},
        "alarm": {"buzzer": "no"},
    }
    assert errors_of(data) == [
        "profile: 'salon' is not allowed: must be one of home, clinic",
        "pins.buzzer: 17 is not allowed: GPIO17 is already used by pins.led_red",
        "hx711.gain: 100 is not allowed: must be one of 128, 64, 32",
        "hx711.rate_sps: 'fast' is not allowed: must be one of 10, 80",
        "hx711.samples: unknown key (allowed: interface, spi, rate_sps, gain, "
        "ready_timeout_periods, max_clock_high_us)",
        "pressure.zones.over_n: 4.5 is not allowed: must be > pressure.zones.high_n (5.0)",
        # A rule across keys still runs while another key in the section is wrong.
        "pressure.filters[1].median: spike-rejection filters must come before smoothing filters",
        "alarm.buzzer: 'no' is not allowed: must be true or false",
    ]


def test_a_rule_across_fields_waits_until_its_fields_are_valid() -> None:
    """over_n < capacity cannot be judged while capacity itself is wrong: one message, not two."""
    data = {"load_cell": {"capacity_n": "heavy"}, "pressure": {"zones": {"over_n": 60}}}
    assert errors_of(data) == [
        "load_cell.capacity_n: 'heavy' is not allowed: must be a number > 0 and <= 2000"
    ]


# --- files -----------------------------------------------------------------------------------


def test_config_error_lists_one_error_per_line_prefixed_with_the_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"hx711": {"gain": 1}, "log_level": "loud"}, source="/etc/dg.yaml")
    assert info.value.source == "/etc/dg.yaml"
    lines = str(info.value).splitlines()
    assert len(lines) == 2 == len(info.value.errors)
    assert all(line.startswith("/etc/dg.yaml: ") for line in lines)


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "dg.yaml"
    path.write_text("profile: clinic\npressure:\n  zones:\n    over_n: 6\n", encoding="utf-8")
    config = load_config(str(path))
    assert config.profile == "clinic" and config.pressure.zones.over_n == 6.0


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "dg.yaml"
    path.write_text("pins:\n  buzzer: 18\n  led_red: [17\nlog_level: info\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [message] = info.value.errors
    assert message.startswith("line 4, column 10: YAML syntax error: ")
    assert str(info.value).startswith(f"{path}: line 4, column 10: ")


def test_a_repeated_key_is_an_error_not_silently_overridden(tmp_path: Path) -> None:
    path = tmp_path / "dg.yaml"
    path.write_text("pressure:\n  zones:\n    over_n: 4\n    over_n: 9\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        "line 4, column 5: YAML error: duplicate key 'over_n' (first on line 3)"
    ]


def test_yaml_merge_keys_still_override(tmp_path: Path) -> None:
    path = tmp_path / "dg.yaml"
    text = "pressure:\n  zones:\n    <<: {over_n: 9, ok_n: 2}\n    over_n: 5\n"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).pressure.zones.ok_n == 2.0
    assert load_config(path).pressure.zones.over_n == 5.0


@pytest.mark.parametrize(
    ("content", "message_start"),
    [
        (b"- 1\n- 2\n", "top level: [1, 2] is not allowed"),
        (b"just words\n", "top level: 'just words' is not allowed"),
        (b"x: !!python/object:os.system {}\n", "line 1, column 4: YAML error"),
        (b"a: \xff\xfe\xfd\n", "is not a text file"),
    ],
)
def test_files_that_are_not_a_settings_mapping(
    tmp_path: Path, content: bytes, message_start: str
) -> None:
    path = tmp_path / "dg.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [message] = info.value.errors
    assert message.startswith(message_start)


@pytest.mark.parametrize("content", ["", "\n\n", "# all commented out\n#pins:\n"])
def test_an_empty_file_means_defaults(tmp_path: Path, content: str) -> None:
    path = tmp_path / "dg.yaml"
    path.write_text(content, encoding="utf-8")
    assert load_config(path) == default_config()


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: file not found"


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.errors == ["is a directory, not a configuration file"]


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state_dir", "env", "expected"),
    [
        ("/srv/dg", {"STATE_DIRECTORY": "/var/lib/dermaguard"}, "/srv/dg"),
        (None, {"STATE_DIRECTORY": "/var/lib/dermaguard:/var/lib/other"}, "/var/lib/dermaguard"),
        (
            None,
            {"XDG_STATE_HOME": "/home/u/.state", "HOME": "/home/u"},
            "/home/u/.state/dermaguard",
        ),
        (
            None,
            {"XDG_STATE_HOME": "relative", "HOME": "/home/u"},
            "/home/u/.local/state/dermaguard",
        ),
        (None, {"HOME": "/home/u"}, "/home/u/.local/state/dermaguard"),
    ],
)
def test_state_dir_resolution(state_dir: str | None, env: dict[str, str], expected: str) -> None:
    config = parse_config({"state_dir": state_dir})
    assert config.resolved_state_dir(env) == Path(expected)


def test_state_dir_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/dermaguard")
    assert default_config().resolved_state_dir() == Path("/var/lib/dermaguard")


def test_calibration_path_is_relative_to_the_state_dir() -> None:
    env = {"STATE_DIRECTORY": "/var/lib/dermaguard"}
    assert default_config().calibration_path(env) == Path("/var/lib/dermaguard/calibration.json")
    absolute = parse_config({"calibration": {"file": "/etc/dg/cal.json"}})
    assert absolute.calibration_path(env) == Path("/etc/dg/cal.json")


# --- the validator is generic: new sections need no change to it ----------------------------


@dataclass(frozen=True)
class _MorePins(PinsConfig):
    lid_switch: int | None = field(default=None, metadata=meta(min=0, max=27, doc="Lid switch."))


@dataclass(frozen=True)
class _Case:
    mode: Literal["timed", "dose"] = field(default="timed", metadata=meta(doc="How long to run."))
    minutes: float = field(default=10.0, metadata=meta(min=1, max=60, doc="Cycle length."))
    pins: _MorePins = field(default_factory=_MorePins, metadata=meta(doc="Pins."))


def test_a_new_section_is_validated_from_its_metadata_alone() -> None:
    errors: list[str] = []
    case = config_validate.parse_section(_Case, {"mode": "dose", "minutes": 5}, "case", errors)
    assert case == _Case(mode="dose", minutes=5.0) and not errors
    bad = {"mode": "uv", "minutes": 0, "pins": {"lid_switch": 17}}
    assert config_validate.parse_section(_Case, bad, "case", errors) is None
    assert errors == [
        "case.mode: 'uv' is not allowed: must be one of timed, dose",
        "case.minutes: 0 is not allowed: must be >= 1 and <= 60",
        "case.pins.lid_switch: 17 is not allowed: GPIO17 is already used by case.pins.led_red",
    ]
    assert ("case.minutes", "10.0", "number >= 1 and <= 60", "Cycle length.") in (
        config_reference.reference_rows(_Case, "case")
    )


def test_an_optional_pin_left_unset_is_not_a_conflict() -> None:
    errors: list[str] = []
    pins = config_validate.parse_section(_MorePins, {"lid_switch": None}, "pins", errors)
    assert pins is not None and pins.lid_switch is None and not errors


@dataclass(frozen=True)
class _Misspelt:
    x: int = field(default=1, metadata={"doc": "x", "maximum": 3})


def test_a_misspelt_constraint_in_the_schema_fails_loudly() -> None:
    with pytest.raises(TypeError, match="unknown metadata"):
        config_fields.field_infos(_Misspelt)


# --- properties: nothing but ConfigError ever escapes ---------------------------------------

_KEY_NAMES = sorted(
    {part for row in reference_rows() for part in row[0].replace("[]", "").split(".")}
)
_keys = (
    st.sampled_from(_KEY_NAMES) | st.text(max_size=8) | st.integers() | st.booleans() | st.none()
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, 1, 3, 17, 128])
    | st.sampled_from([400, -400, 5000, -5000]).map(lambda n: (-1 if n < 0 else 1) * 10 ** abs(n))
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["median", "ema", "moving_average", "home", "info", ""])
)
_yaml_like = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=25,
)


def _assert_config_or_config_error(data: object) -> None:
    try:
        config = parse_config(data)
    except ConfigError as exc:
        event("ConfigError")
        assert exc.errors
        assert all(isinstance(e, str) and e.strip() for e in exc.errors)
        assert str(exc)
    else:
        event("Config")
        assert isinstance(config, Config)
        assert parse_config(config_to_data(config)) == config


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _yaml_like, max_size=6) | _yaml_like)
def test_arbitrary_data_gives_a_config_or_a_config_error(data: object) -> None:
    _assert_config_or_config_error(data)


_EXAMPLE_DATA = yaml.safe_load(example_config_text())


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        out.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, out)
    return out


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_random_change_to_a_valid_config_gives_a_config_or_a_config_error(
    data: st.DataObject,
) -> None:
    config = copy.deepcopy(_EXAMPLE_DATA)
    target = data.draw(st.sampled_from(_containers(config, [])))
    value = data.draw(_yaml_like)
    if isinstance(target, dict):
        key = data.draw(st.sampled_from(sorted(target)) | _keys)
        action = data.draw(st.sampled_from(["set", "delete"]))
        if action == "delete" and key in target:
            del target[key]
        else:
            target[key] = value
    else:
        index = data.draw(st.integers(0, len(target)))
        target.insert(index, value)
    _assert_config_or_config_error(config)


def test_the_home_needle_limit_is_reported_with_the_other_errors_in_one_pass() -> None:
    data = {
        "care": {"needle_mm": 1.5, "replace_after_uses": -3},
        "mqtt": {"port": 99999},
        "hx711": {"gainn": 128},
    }
    errors = errors_of(data)
    assert len(errors) == 4, errors
    assert any(e.startswith("care.needle_mm: 1.5 is not allowed: the home profile") for e in errors)
    assert any(e.startswith("care.replace_after_uses: -3") for e in errors)
