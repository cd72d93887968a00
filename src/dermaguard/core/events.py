"""What goes into the core and what comes out of it.

Inputs carry their own monotonic timestamp ``t`` (seconds); the core never reads a clock.
Effects are plain data the shell applies in order: indicators first, so an alarm is shown before
anything slow (disk, network) happens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

Zone = Literal["none", "light", "ok", "high", "over"]
ZONES: tuple[Zone, ...] = ("none", "light", "ok", "high", "over")


class Priority(IntEnum):
    """Alarm priorities, after IEC 60601-1-8 (higher value wins)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForceRead:
    """A conversion read from the HX711: the signed 24-bit code."""

    t: float
    raw: int


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """No usable conversion within the time limit (``detail`` says what the shell saw)."""

    t: float
    reason: Literal["timeout"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: lets timers (dwell, countdowns, idle timeouts) advance without samples."""

    t: float


Input = ForceRead | ReadFailed | Tick


# --- effects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """A domain event, as later stored and published (type names follow DESIGN §6)."""

    type: str
    t: float
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmitEvent:
    event: Event


@dataclass(frozen=True, slots=True)
class ShowIndicators:
    """What the LED and buzzer should show now.

    ``alarm`` is the highest active alarm priority (``None``: no alarm), ``alarm_reason`` its
    cause; ``zone`` is the pressure zone shown when no alarm overrides it (``None``: unknown).
    """

    zone: Zone | None
    alarm: Priority | None
    alarm_reason: str | None


@dataclass(frozen=True, slots=True)
class ForceSample:
    """One processed sample: force in newtons (``None`` when unknown, never 0) and its zone."""

    t: float
    force_n: float | None
    zone: Zone | None


@dataclass(frozen=True, slots=True)
class SetUv:
    """Drive the UV-C output. The shell applies ``on=False`` at once and may refuse ``True``."""

    on: bool


@dataclass(frozen=True, slots=True)
class CaseStatus:
    """The case as a person sees it: emitted on every change and as the countdown moves."""

    t: float
    state: str
    uv_on: bool
    remaining_s: float | None
    sterile: bool
    abort_reason: str | None = None


Effect = EmitEvent | ShowIndicators | ForceSample | SetUv | CaseStatus
