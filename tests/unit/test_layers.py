"""The layers of docs/ARCHITECTURE.md hold: import-linter checks pyproject's contracts.

A lower layer that imports a higher one (``mqtt`` reaching up for the CLI's words, real hardware
pulling in the simulator) fails here with the import chain that breaks the rule.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def contracts() -> list[dict[str, object]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[dict[str, object]] = data["tool"]["importlinter"]["contracts"]
    return found


def test_the_layer_contract_names_every_package() -> None:
    packages = {
        p.name
        for p in (ROOT / "src" / "dermaguard").iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "data"
    }
    layers = next(c for c in contracts() if c["id"] == "layers")["layers"]
    assert isinstance(layers, list)
    named = {name.strip() for layer in layers for name in str(layer).split("|")}
    assert named == packages


def test_imports_run_one_way_through_the_layers() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--config", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts())} kept, 0 broken" in result.stdout
