"""Schedules that need real processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .catalogue import Schedule
from .invariants import Violation


def run_proc_schedule(
    schedule: Schedule, base: Path, broker: Any
) -> tuple[list[Violation], dict[str, int]]:
    raise NotImplementedError
