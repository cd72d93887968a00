"""How a session's force is cut into passes (``session.passes``; core/passes.py does the cut).

Every default is an engineering estimate (docs/CARE.md): no study measured how people lift a
roller between passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dermaguard.config.fields import meta
from dermaguard.config.messages import join_path, not_allowed


@dataclass(frozen=True)
class PassesConfig:
    """Contacts separated by lifts, with hysteresis and minimum durations."""

    lift_n: float | None = field(
        default=None,
        metadata=meta(
            min_exclusive=0,
            max=10,
            doc="A pass starts at this force; null: pressure.zones.contact_n.",
        ),
    )
    hysteresis_n: float = field(
        default=0.1,
        metadata=meta(
            min=0,
            max=5,
            allowed="number >= 0 and < the lift threshold",
            doc="A contact ends only this far below the lift threshold, so noise is no lift.",
        ),
    )
    min_lift_s: float = field(
        default=0.3,
        metadata=meta(min=0, max=10, doc="A shorter lift is a wobble: the pass goes on after it."),
    )
    min_pass_s: float = field(
        default=0.5,
        metadata=meta(min=0, max=60, doc="A shorter contact is a touch, not a pass."),
    )

    def lift_threshold(self, contact_n: float) -> float:
        """The force a pass starts at: ``lift_n``, or the contact threshold by default."""
        return contact_n if self.lift_n is None else self.lift_n

    def check_against(self, contact_n: float, path: str) -> list[str]:
        """The hysteresis must leave a lift above 0 N, or no lift could ever be seen."""
        lift = self.lift_threshold(contact_n)
        if self.hysteresis_n < lift:
            return []
        source = "" if self.lift_n is not None else " (pressure.zones.contact_n, as lift_n is null)"
        requirement = f"must be < the lift threshold {lift:g}{source}"
        return [not_allowed(join_path(path, "hysteresis_n"), self.hysteresis_n, requirement)]
