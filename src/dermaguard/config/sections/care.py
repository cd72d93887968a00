"""Care rules (rest between sessions, roller wear) and how sessions are recorded.

docs/CARE.md gives each care default its source (or calls it an engineering estimate); they are
care guidance, not medical advice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dermaguard.config.fields import meta
from dermaguard.config.sections.passes import PassesConfig

#: Minimum rest between sessions by needle length (docs/CARE.md): up to 0.25 mm a day, up to
#: 0.5 mm two days, up to 1.0 mm three days (two to three sessions a week), deeper a week.
REST_BY_NEEDLE_H: tuple[tuple[float, float], ...] = ((0.25, 24.0), (0.5, 48.0), (1.0, 72.0))
DEEP_NEEDLE_REST_H = 168.0
HOME_MAX_NEEDLE_MM = 1.0


def default_rest_h(needle_mm: float) -> float:
    """The care guidance's minimum rest for a needle length, in hours."""
    for limit_mm, hours in REST_BY_NEEDLE_H:
        if needle_mm <= limit_mm:
            return hours
    return DEEP_NEEDLE_REST_H


@dataclass(frozen=True)
class CareConfig:
    """Care rules from the guidance (values are guidance, not medical advice)."""

    needle_mm: float = field(
        default=0.5,
        metadata=meta(
            min=0.2,
            max=3.0,
            doc="Needle length of the roller; the home profile allows at most 1.0 mm (S9).",
        ),
    )
    min_rest_h: float | None = field(
        default=None,
        metadata=meta(
            min=12,
            max=720,
            doc="Minimum rest between sessions; null: by needle length (24/48/72 h, 7 d).",
        ),
    )
    replace_after_uses: int = field(
        default=10,
        metadata=meta(min=1, max=50, doc="Warn to replace the roller after this many uses."),
    )

    @property
    def rest_s(self) -> float:
        hours = self.min_rest_h if self.min_rest_h is not None else default_rest_h(self.needle_mm)
        return hours * 3600.0


@dataclass(frozen=True)
class SessionConfig:
    """How sessions are detected and recorded."""

    idle_timeout_s: float = field(
        default=120.0,
        metadata=meta(
            min=10, max=3600, doc="A session out of the dock ends after this long without contact."
        ),
    )
    trace_hz: float = field(
        default=10.0,
        metadata=meta(min=1, max=80, doc="Rate of the force trace stored with each session."),
    )
    passes: PassesConfig = field(
        default_factory=PassesConfig,
        metadata=meta(doc="How the force is cut into passes (contacts between lifts)."),
    )
