"""``check-config`` refuses an output polarity the boot configuration contradicts (docs/SAFETY.md,
H33): ``gpio=25=op,dl`` holds an active-low UV-C driver *on* from power-on."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermaguard.config.boot_config import REPOSITORY, boot_config_path, boot_levels
from dermaguard.ui.cli import main

ACTIVE_LOW_UV = "case:\n  uv_active_high: false\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(tmp_path: Path, config: str, boot: Path) -> int:
    return main(
        ["check-config", str(write(tmp_path, "c.yaml", config)), "--boot-config", str(boot)]
    )


def test_h33_an_active_low_uv_driver_against_the_repositorys_boot_lines_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, ACTIVE_LOW_UV, REPOSITORY) == 2
    err = capsys.readouterr().err
    line_no = next(
        n
        for n, line in enumerate(REPOSITORY.read_text().splitlines(), 1)
        if line == "gpio=25=op,dl"
    )
    assert "case.uv_active_high: false is not allowed" in err
    assert f"line {line_no} (`gpio=25=op,dl`) drives GPIO25 (pins.uv_led) low from boot" in err
    assert "change that line to `gpio=25=op,dh`" in err


def test_h33_the_defaults_match_the_repositorys_boot_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, "{}\n", REPOSITORY) == 0
    assert ": OK (device" in capsys.readouterr().out


def test_h33_a_boot_config_that_holds_the_active_low_off_level_is_accepted(
    tmp_path: Path,
) -> None:
    boot = write(tmp_path, "config.txt", "[all]\ngpio=18=op,dl\ngpio=25=op,dl\ngpio=25=op,dh\n")
    assert check(tmp_path, ACTIVE_LOW_UV, boot) == 0  # the later line wins, as in the firmware


def test_h33_a_moved_uv_pin_without_its_boot_line_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, "pins:\n  uv_led: 12\n", REPOSITORY) == 2
    err = capsys.readouterr().err
    assert "has no line that drives GPIO12 (pins.uv_led) to its off level" in err
    assert "add `gpio=12=op,dl`" in err


def test_h33_the_installed_boot_config_is_read_first_else_the_repositorys(tmp_path: Path) -> None:
    installed = tmp_path / "boot" / "firmware" / "config.txt"
    assert boot_config_path(installed, REPOSITORY) == REPOSITORY
    installed.parent.mkdir(parents=True)
    installed.write_text("gpio=25=op,dl\n")
    assert boot_config_path(installed, REPOSITORY) == installed
    assert boot_config_path(tmp_path / "none", tmp_path / "neither") is None


def test_boot_levels_follow_lists_ranges_and_comments() -> None:
    levels = boot_levels("gpio=17,27,22=op,dl\ngpio=5-6=op,dh # comment\n#gpio=25=op,dh\n")
    assert {g: (lv.output, lv.high) for g, lv in levels.items()} == {
        17: (True, False),
        27: (True, False),
        22: (True, False),
        5: (True, True),
        6: (True, True),
    }
