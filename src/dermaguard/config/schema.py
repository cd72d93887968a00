"""The configuration schema: frozen dataclasses whose field metadata carries every constraint.

The sections live in :mod:`dermaguard.config.sections`, one module per concern; this module
joins them into :class:`Config` and holds the rules across sections. To add a section, write a
frozen dataclass whose fields are ``field(default=..., metadata=meta(doc=..., ...))`` (plus
``_check`` for rules across its fields) and add it to :class:`Config`; the validator, the
reference and :func:`~dermaguard.config.load.config_to_data` pick it up with no other change.
The defaults here are the only ones: the core's parameters have none, and
:mod:`dermaguard.config.params` builds them from a config (or from the defaults).

docs/CARE.md gives each care default its source (or calls it an engineering estimate), whichever
section it is in; they are care guidance, not medical advice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dermaguard.config.fields import NON_EMPTY, meta
from dermaguard.config.messages import join_path, not_allowed
from dermaguard.config.sections.care import HOME_MAX_NEEDLE_MM, CareConfig, SessionConfig
from dermaguard.config.sections.case import CaseConfig
from dermaguard.config.sections.hardware import (
    HX711_PINS,
    CalibrationConfig,
    Hx711Config,
    LoadCellConfig,
    PinsConfig,
    distinct_pins,
)
from dermaguard.config.sections.network import MqttConfig, WebConfig
from dermaguard.config.sections.pressure import AlarmConfig, PressureConfig

Profile = Literal["home", "clinic"]
LogLevel = Literal["debug", "info", "warning", "error"]
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


@dataclass(frozen=True)
class Config:
    """The whole dermaguard configuration."""

    device_id: str = field(
        default="dermaguard",
        metadata=meta(
            pattern=DEVICE_ID_PATTERN,
            pattern_doc="1 to 64 of a-z 0-9 _ -, starting with a letter or digit",
            doc="Names this device in MQTT topics (dermaguard/<device_id>/...) and records.",
        ),
    )
    profile: Profile = field(
        default="home",
        metadata=meta(doc="home refuses needles over 1.0 mm; clinic is for professionals."),
    )
    state_dir: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="Database, calibration; null: $STATE_DIRECTORY, $XDG_STATE_HOME, ~/.local/state.",
        ),
    )
    log_level: LogLevel = field(
        default="info", metadata=meta(doc="Least severe log messages that are written.")
    )
    pins: PinsConfig = field(
        default_factory=PinsConfig, metadata=meta(doc="BCM GPIO numbers, all distinct.")
    )
    hx711: Hx711Config = field(default_factory=Hx711Config, metadata=meta(doc="The HX711 ADC."))
    load_cell: LoadCellConfig = field(
        default_factory=LoadCellConfig, metadata=meta(doc="The load cell.")
    )
    calibration: CalibrationConfig = field(
        default_factory=CalibrationConfig, metadata=meta(doc="The calibration file.")
    )
    pressure: PressureConfig = field(
        default_factory=PressureConfig, metadata=meta(doc="Filters, zones and sensor faults.")
    )
    alarm: AlarmConfig = field(
        default_factory=AlarmConfig, metadata=meta(doc="The over-pressure alarm outputs.")
    )
    case: CaseConfig = field(
        default_factory=CaseConfig, metadata=meta(doc="The UV-C disinfecting case.")
    )
    care: CareConfig = field(
        default_factory=CareConfig, metadata=meta(doc="Needle length, rest and roller wear.")
    )
    session: SessionConfig = field(
        default_factory=SessionConfig, metadata=meta(doc="Session detection and recording.")
    )
    mqtt: MqttConfig = field(
        default_factory=MqttConfig, metadata=meta(doc="MQTT broker, topics and discovery.")
    )
    web: WebConfig = field(
        default_factory=WebConfig, metadata=meta(doc="The local web dashboard (dermaguard web).")
    )

    def _check(self, path: str) -> list[str]:
        """Rules across sections: the alarm threshold must be a force the cell can measure,
        and a UV dose can only be measured with a UV sensor."""
        errors: list[str] = []
        over_n, capacity_n = self.pressure.zones.over_n, self.load_cell.capacity_n
        if over_n >= capacity_n:
            requirement = f"must be < {join_path(path, 'load_cell.capacity_n')} ({capacity_n})"
            errors.append(
                not_allowed(join_path(path, "pressure.zones.over_n"), over_n, requirement)
            )
        needle = self.care.needle_mm
        if self.profile == "home" and needle > HOME_MAX_NEEDLE_MM:
            # S9: deeper needling is for a professional.
            requirement = (
                f"the home profile allows at most {HOME_MAX_NEEDLE_MM:g} mm "
                f"(deeper needling is for a professional: {join_path(path, 'profile')}: clinic)"
            )
            errors.append(not_allowed(join_path(path, "care.needle_mm"), needle, requirement))
        errors.extend(self._hx711_pin_errors(path))
        passes_path = join_path(path, "session.passes")
        errors.extend(self.session.passes.check_against(self.pressure.zones.contact_n, passes_path))
        # Dose mode has one definition, the core's (CaseParams.dose_mode: an irradiance and a UV
        # sensor); an irradiance asks for it, so here it must come with the sensor.
        if self.case.irradiance_mw_cm2 is not None and self.pins.uv_sensor is None:
            requirement = f"needs {join_path(path, 'pins.uv_sensor')} (a dose is measured by it)"
            key = join_path(path, "case.irradiance_mw_cm2")
            errors.append(not_allowed(key, self.case.irradiance_mw_cm2, requirement))
        return errors

    def _hx711_pin_errors(self, path: str) -> list[str]:
        """The HX711's pins for its interface: distinct from the rest, and off the SPI bus.

        With ``spi`` the kernel's SPI driver owns GPIO 7-11 whether or not they are wired, so
        nothing else may use them; ``hx711_dout`` and ``hx711_sck`` are then unused.
        """
        pins_path = join_path(path, "pins")
        others = self.pins.wired(HX711_PINS)
        taken = {gpio: join_path(pins_path, name) for name, gpio in others.items()}
        if self.hx711.interface == "gpio":
            mine = {name: getattr(self.pins, name) for name in ("hx711_dout", "hx711_sck")}
            return distinct_pins(mine, pins_path, taken)
        errors: list[str] = []
        bus = {gpio: name for name, gpio in self.hx711.spi.pins().items()}
        ready = self.pins.wired().get("hx711_ready")
        candidates = dict(others)
        if ready is not None:
            candidates["hx711_ready"] = ready
        for name, gpio in candidates.items():
            if gpio in bus:
                requirement = (
                    f"GPIO{gpio} is SPI0's {bus[gpio].upper()} while "
                    f"{join_path(path, 'hx711.interface')} is spi (GPIO 7-11 belong to the bus); "
                    "move it, or use interface gpio"
                )
                errors.append(not_allowed(join_path(pins_path, name), gpio, requirement))
        if ready is not None and ready not in bus:
            errors.extend(distinct_pins({"hx711_ready": ready}, pins_path, taken))
        return errors

    def resolved_state_dir(self, environ: Mapping[str, str] | None = None) -> Path:
        """The state directory: the configured one, else systemd's, else the XDG one."""
        env = os.environ if environ is None else environ
        if self.state_dir is not None:
            return Path(self.state_dir).expanduser()
        systemd = env.get("STATE_DIRECTORY", "").split(":")[0]  # systemd may list several
        if systemd:
            return Path(systemd)
        xdg = env.get("XDG_STATE_HOME", "")
        if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative one
            return Path(xdg) / "dermaguard"
        home = env.get("HOME")
        return (Path(home) if home else Path.home()) / ".local" / "state" / "dermaguard"

    def calibration_path(self, environ: Mapping[str, str] | None = None) -> Path:
        """The calibration file; a relative name is taken inside the state directory."""
        path = Path(self.calibration.file).expanduser()
        return path if path.is_absolute() else self.resolved_state_dir(environ) / path
