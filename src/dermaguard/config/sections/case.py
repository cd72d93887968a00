"""The UV-C disinfecting case: a timed cycle, or one that ends on a measured dose."""

from __future__ import annotations

from dataclasses import dataclass, field

from dermaguard.config.fields import meta
from dermaguard.config.messages import join_path, not_allowed

#: The dose mode's target at the least-exposed needle, in mJ/cm² (docs/CARE.md: soiled carriers
#: need far more than the ~6 mJ/cm² that clears S. aureus from a clean surface).
DEFAULT_DOSE_MJ_CM2 = 40.0


@dataclass(frozen=True)
class CaseConfig:
    """The UV-C disinfecting case: cycle, how long disinfection holds and the switch wiring."""

    cycle_min: float = field(
        default=10.0,
        metadata=meta(min=1, max=60, doc="Length of a timed cycle; UV is capped at +10% (S4)."),
    )
    auto_start: bool = field(
        default=True,
        metadata=meta(doc="Start a cycle when the lid closes on a docked roller."),
    )
    validity_after_undock_min: float = field(
        default=15.0,
        metadata=meta(
            min=1, max=240, doc="Disinfection holds this long after the roller leaves the dock."
        ),
    )
    uv_confirm_s: float = field(
        default=5.0,
        metadata=meta(
            min=1, max=60, doc="With a UV sensor: no light this soon after UV on aborts (S5)."
        ),
    )
    irradiance_mw_cm2: float | None = field(
        default=None,
        metadata=meta(
            min_exclusive=0,
            doc="Measured irradiance at the least-exposed needle; set, cycles end on the dose.",
        ),
    )
    dose_mj_cm2: float | None = field(
        default=DEFAULT_DOSE_MJ_CM2,
        metadata=meta(
            min_exclusive=0,
            doc=(
                f"Target dose with irradiance_mw_cm2 (and pins.uv_sensor); "
                f"null: {DEFAULT_DOSE_MJ_CM2:g}."
            ),
        ),
    )
    lid_active_low: bool = field(
        default=True,
        metadata=meta(doc="Lid reed switch closes to GND (pull-up); false: to 3.3 V (pull-down)."),
    )
    lid_mismatch_ms: int = field(
        default=1000,
        metadata=meta(
            min=50,
            max=5000,
            doc=(
                "The lid's reed switch and its microswitch's NC contact (pins.lid_contact) may "
                "disagree this long, a lid closing slowly, before it is a fault (UV off, alarm)."
            ),
        ),
    )
    dock_active_low: bool = field(
        default=True,
        metadata=meta(doc="Dock switch closes to GND (pull-up); false: to 3.3 V (pull-down)."),
    )
    uv_active_high: bool = field(
        default=True, metadata=meta(doc="The UV-C LED driver switches on with a high GPIO.")
    )
    debounce_ms: int = field(
        default=20,
        metadata=meta(
            min=0, max=500, doc="Switch debounce; a lid opening still switches UV off at once."
        ),
    )

    @property
    def cycle_s(self) -> float:
        return self.cycle_min * 60.0

    @property
    def validity_after_undock_s(self) -> float:
        return self.validity_after_undock_min * 60.0

    @property
    def lid_mismatch_s(self) -> float:
        return self.lid_mismatch_ms / 1000.0

    @property
    def debounce_s(self) -> float:
        return self.debounce_ms / 1000.0

    @property
    def dose_target_mj_cm2(self) -> float:
        """The dose a dose-mode cycle aims at; null in a file (older examples wrote it) is the
        default."""
        return DEFAULT_DOSE_MJ_CM2 if self.dose_mj_cm2 is None else self.dose_mj_cm2

    def _check(self, path: str) -> list[str]:
        """A changed dose is only used with an irradiance, and a dose must take as long as an
        allowed timed cycle."""
        irradiance, dose = self.irradiance_mw_cm2, self.dose_target_mj_cm2
        if irradiance is None:
            if dose != DEFAULT_DOSE_MJ_CM2:
                requirement = (
                    f"needs {join_path(path, 'irradiance_mw_cm2')} too (a dose is reached at a "
                    f"measured irradiance; without one the cycle is timed)"
                )
                return [not_allowed(join_path(path, "dose_mj_cm2"), dose, requirement)]
            return []
        seconds = dose / irradiance
        if 60.0 <= seconds <= 3600.0:
            return []
        # Too short: name the smallest dose that fits. Too long: say the box is too weak rather
        # than invite a smaller dose.
        fix = (
            f"so at this irradiance the dose must be at least {irradiance * 60.0:.6g}"
            if seconds < 60.0
            else f"and this irradiance gives at most {irradiance * 3600.0:.6g} in 60 min"
        )
        requirement = (
            f"takes {seconds:.6g} s at {join_path(path, 'irradiance_mw_cm2')} ({irradiance:g}); "
            f"a cycle must take 1 to 60 min, {fix}"
        )
        return [not_allowed(join_path(path, "dose_mj_cm2"), dose, requirement)]
