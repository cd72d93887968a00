"""The configuration schema: frozen dataclasses whose field metadata carries every constraint.

docs/CARE.md gives each care default its source (or calls it an engineering estimate); they are
care guidance, not medical advice. To add a section, write a frozen dataclass whose fields are
``field(default=..., metadata=meta(doc=..., ...))`` (plus ``_check`` for rules across its
fields) and add it to :class:`Config`; the validator, the reference and
:func:`~dermaguard.config.load.config_to_data` pick it up with no other change.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from dermaguard.config.fields import meta
from dermaguard.config.messages import join_path, not_allowed

Profile = Literal["home", "clinic"]
LogLevel = Literal["debug", "info", "warning", "error"]
FilterKind = Literal["median", "moving_average", "ema"]

#: Filter kinds that reject spikes; the over-pressure alarm taps the signal after them.
SPIKE_REJECTION: frozenset[str] = frozenset({"median"})

DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NON_EMPTY = r"(?s).*\S.*"


def _pin(doc: str) -> dict[str, Any]:
    return meta(min=0, max=27, doc=doc)


@dataclass(frozen=True)
class PinsConfig:
    """BCM GPIO numbers of everything wired to the Pi (hardware/ shows the same pinout)."""

    hx711_dout: int = field(
        default=5, metadata=_pin("HX711 DOUT with hx711.interface gpio: data in, low when ready.")
    )
    hx711_sck: int = field(
        default=6, metadata=_pin("HX711 PD_SCK with hx711.interface gpio: clock out.")
    )
    hx711_ready: int | None = field(
        default=None,
        metadata=_pin(
            "With hx711.interface spi: a GPIO also wired to DOUT, whose falling edge says a "
            "conversion is ready; null: poll DOUT over the bus."
        ),
    )
    led_red: int = field(default=17, metadata=_pin("Red channel of the status LED."))
    led_green: int = field(default=27, metadata=_pin("Green channel of the status LED."))
    led_blue: int = field(default=22, metadata=_pin("Blue channel of the status LED."))
    buzzer: int = field(default=18, metadata=_pin("Buzzer for the audible alarm."))
    lid: int = field(
        default=23, metadata=_pin("Case lid microswitch: closed when the lid is shut.")
    )
    dock: int = field(default=24, metadata=_pin("Dock switch: closed when the roller is docked."))
    uv_led: int = field(
        default=25, metadata=_pin("UV-C LED driver; held low from boot by firmware/config.txt.")
    )
    uv_sensor: int | None = field(
        default=None,
        metadata=_pin("UV sensor's digital output (lit = high); null: no sensor, timed cycles."),
    )

    def _check(self, path: str) -> list[str]:
        """Two functions on one GPIO would fight; every int field here is a pin.

        The HX711's pins depend on ``hx711.interface`` and are checked with it, in
        :meth:`Config._check`.
        """
        return distinct_pins(self.wired(HX711_PINS), path)

    def wired(self, skip: frozenset[str] = frozenset()) -> dict[str, int]:
        """Every wired pin by field name (an optional pin set to null is not wired)."""
        wired: dict[str, int] = {}
        for f in dataclasses.fields(self):
            gpio = getattr(self, f.name)
            if f.name not in skip and isinstance(gpio, int) and not isinstance(gpio, bool):
                wired[f.name] = gpio
        return wired


#: The pins fields that belong to the HX711: which of them are used depends on the interface.
HX711_PINS = frozenset({"hx711_dout", "hx711_sck", "hx711_ready"})


def distinct_pins(
    pins: Mapping[str, int], path: str, taken: Mapping[int, str] | None = None
) -> list[str]:
    """One error per pin whose GPIO is already in ``taken`` or used by an earlier pin."""
    errors: list[str] = []
    used = dict(taken or {})
    for name, gpio in pins.items():
        key = join_path(path, name)
        if gpio in used:
            errors.append(not_allowed(key, gpio, f"GPIO{gpio} is already used by {used[gpio]}"))
        else:
            used[gpio] = key
    return errors


#: SPI0's pins (BCM): the kernel's driver owns all five while SPI is on, whether wired or not.
SPI0_PINS = {"sclk": 11, "mosi": 10, "miso": 9, "ce0": 8, "ce1": 7}
#: A PD_SCK high phase lasts one bit time; the datasheet's power-down is at 60 µs.
SPI_MAX_BIT_US = 50.0
Hx711Interface = Literal["spi", "gpio"]


@dataclass(frozen=True)
class SpiConfig:
    """The SPI bus whose MOSI clocks PD_SCK and whose MISO reads DOUT (hx711.interface: spi)."""

    port: int = field(
        default=0,
        metadata=meta(
            choices=(0,),
            doc="SPI controller: 0, on GPIO 7-11 (dtparam=spi=on); gpiozero knows no other.",
        ),
    )
    device: int = field(
        default=0,
        metadata=meta(
            choices=(0, 1),
            doc="Chip select (CE0 or CE1): not wired to the HX711, but it names /dev/spidev0.N.",
        ),
    )
    hz: int = field(
        default=1_000_000,
        metadata=meta(
            min_exclusive=0,
            max=5_000_000,
            allowed="20000 to 5000000 (Hz)",
            doc=(
                "Bus clock: one PD_SCK high phase lasts one bit (1 µs at 1 MHz). The HX711 "
                "needs at least 0.1 µs from a rising edge to valid data, so at most 5 MHz."
            ),
        ),
    )
    mode: int = field(
        default=0,
        metadata=meta(
            choices=(0, 1),
            doc="SPI mode: 0 or 1 (clock idle low; MISO sampled half a bit after MOSI changes).",
        ),
    )

    def _check(self, path: str) -> list[str]:
        """A bit time over 50 µs would let one PD_SCK pulse approach the chip's power-down."""
        bit_us = 1e6 / self.hz
        if bit_us > SPI_MAX_BIT_US:
            requirement = (
                f"its bit time, {bit_us:.0f} µs, exceeds {SPI_MAX_BIT_US:g} µs: each PD_SCK pulse "
                "lasts one bit and the HX711 powers down after 60 µs"
            )
            return [not_allowed(join_path(path, "hz"), self.hz, requirement)]
        return []

    def pins(self) -> dict[str, int]:
        """The GPIOs the controller owns, by function."""
        return dict(SPI0_PINS)


@dataclass(frozen=True)
class Hx711Config:
    """The HX711 load-cell ADC and how strictly its readings are policed."""

    interface: Hx711Interface = field(
        default="spi",
        metadata=meta(
            doc=(
                "spi: the SPI controller clocks PD_SCK in hardware (PD_SCK on MOSI, DOUT on "
                "MISO), so no scheduling delay can power the chip down; gpio: bit-banged on "
                "pins.hx711_dout and pins.hx711_sck, which can lose reads under load."
            )
        ),
    )
    spi: SpiConfig = field(
        default_factory=SpiConfig, metadata=meta(doc="The SPI bus, with interface spi.")
    )

    rate_sps: int = field(
        default=80,
        metadata=meta(
            choices=(10, 80),
            doc="Samples/s set by the RATE pin wiring; the software only needs to know it.",
        ),
    )
    gain: int = field(
        default=128,
        metadata=meta(choices=(128, 64, 32), doc="128 or 64 read channel A, 32 channel B."),
    )
    ready_timeout_periods: int = field(
        default=3,
        metadata=meta(
            min=2, max=10, doc="No conversion ready within this many periods is a fault."
        ),
    )
    max_clock_high_us: float = field(
        default=50.0,
        metadata=meta(
            min=5,
            max=60,
            doc=(
                "Interface gpio only: a PD_SCK high phase over this may have powered the chip "
                "down (after 60 µs); the read is kept only if a later bit proves it did not."
            ),
        ),
    )


@dataclass(frozen=True)
class LoadCellConfig:
    """The load cell itself."""

    capacity_n: float = field(
        default=50.0,
        metadata=meta(
            min_exclusive=0,
            max=2000,
            doc="Rated capacity; a reading beyond it is invalid; over_n must be below it.",
        ),
    )


@dataclass(frozen=True)
class CalibrationConfig:
    """Where the calibration made by `dermaguard calibrate` is kept."""

    file: str = field(
        default="calibration.json",
        metadata=meta(
            pattern=_NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="Calibration file; a relative path is taken inside the state directory.",
        ),
    )


@dataclass(frozen=True)
class MedianParams:
    """Spike rejection: the median of the last `window` samples."""

    window: int = field(
        default=3,
        metadata=meta(
            min=3, max=9, allowed="odd integer >= 3 and <= 9", doc="Samples in the median."
        ),
    )

    def _check(self, path: str) -> list[str]:
        """An even window has no middle sample."""
        if self.window % 2 == 0:
            return [not_allowed(join_path(path, "window"), self.window, "must be odd")]
        return []


@dataclass(frozen=True)
class MovingAverageParams:
    """Smoothing: the mean of the last `window` samples."""

    window: int = field(
        default=4, metadata=meta(min=2, max=50, doc="Samples averaged; delay (window-1)/2.")
    )


@dataclass(frozen=True)
class EmaParams:
    """Smoothing: an exponential moving average."""

    alpha: float = field(
        default=0.5,
        metadata=meta(
            min_exclusive=0, max=1, doc="Weight of the newest sample; 1 means no smoothing."
        ),
    )


@dataclass(frozen=True)
class FilterSpec:
    """One step of the force filter chain, as configured (only its kind's parameter is set)."""

    kind: FilterKind
    window: int | None = None
    alpha: float | None = None

    @property
    def is_spike_rejection(self) -> bool:
        return self.kind in SPIKE_REJECTION


FILTER_VARIANTS: dict[str, type] = {
    "median": MedianParams,
    "moving_average": MovingAverageParams,
    "ema": EmaParams,
}
DEFAULT_FILTERS = (FilterSpec("median", window=3), FilterSpec("ema", alpha=0.5))
_ZONE_THRESHOLDS = ("contact_n", "ok_n", "high_n", "over_n")


@dataclass(frozen=True)
class ZonesConfig:
    """Force zones in newtons, lowest first; each threshold is where its zone starts."""

    contact_n: float = field(
        default=0.3, metadata=meta(min_exclusive=0, doc="Touching the skin: zone light.")
    )
    ok_n: float = field(
        default=1.0, metadata=meta(allowed="number > contact_n", doc="Start of zone ok.")
    )
    high_n: float = field(
        default=3.0,
        metadata=meta(allowed="number > ok_n", doc="Start of zone high: firmer than needed."),
    )
    over_n: float = field(
        default=4.5,
        metadata=meta(
            allowed="number > high_n and < load_cell.capacity_n",
            doc="Over-pressure: alarms at once; clears below high_n - hysteresis_n.",
        ),
    )
    hysteresis_n: float = field(
        default=0.2,
        metadata=meta(
            min=0,
            allowed="number >= 0 and < the smallest gap between thresholds",
            doc="A zone is left only this far past its threshold, so it does not chatter.",
        ),
    )
    dwell_samples: int = field(
        default=3,
        metadata=meta(
            min=1, max=80, doc="Samples a new zone must hold before it shows (over: at once)."
        ),
    )

    def _check(self, path: str) -> list[str]:
        """Zones must be ordered, and the hysteresis must not reach across a whole zone."""
        errors: list[str] = []
        for lower, upper in pairwise(_ZONE_THRESHOLDS):
            low, high = getattr(self, lower), getattr(self, upper)
            if not high > low:
                requirement = f"must be > {join_path(path, lower)} ({low})"
                errors.append(not_allowed(join_path(path, upper), high, requirement))
        if errors:
            return errors
        gap, lower, upper = min(
            (getattr(self, hi) - getattr(self, lo), lo, hi) for lo, hi in pairwise(_ZONE_THRESHOLDS)
        )
        if not self.hysteresis_n < gap:
            requirement = (
                f"must be < {gap:.6g}, the smallest gap between thresholds "
                f"({join_path(path, lower)} to {join_path(path, upper)})"
            )
            key = join_path(path, "hysteresis_n")
            errors.append(not_allowed(key, self.hysteresis_n, requirement))
        return errors


@dataclass(frozen=True)
class PressureConfig:
    """From force to zones: the filter chain, the zones and the sensor-fault rules."""

    filters: tuple[FilterSpec, ...] = field(
        default=DEFAULT_FILTERS,
        metadata=meta(
            variants=FILTER_VARIANTS,
            doc="Filters in the order they run; spike rejection first (the alarm taps after it).",
        ),
    )
    zones: ZonesConfig = field(
        default_factory=ZonesConfig, metadata=meta(doc="Force zones, hysteresis and dwell.")
    )
    invalid_samples_for_fault: int = field(
        default=3,
        metadata=meta(min=1, max=80, doc="Invalid samples in a row that raise sensor_fault."),
    )
    valid_samples_for_recovery: int = field(
        default=3,
        metadata=meta(min=1, max=80, doc="Valid samples in a row that clear sensor_fault."),
    )
    negative_margin_n: float = field(
        default=0.5,
        metadata=meta(
            min_exclusive=0,
            max=10,
            doc="A force below minus this is no reading: a reversed cell or a tare under load.",
        ),
    )
    negative_samples_for_fault: int = field(
        default=10,
        metadata=meta(
            min=1, max=80, doc="Samples in a row below -negative_margin_n that raise sensor_fault."
        ),
    )

    @property
    def spike_filters(self) -> tuple[FilterSpec, ...]:
        """The filters before the over-pressure tap."""
        return tuple(f for f in self.filters if f.is_spike_rejection)

    @property
    def smoothing_filters(self) -> tuple[FilterSpec, ...]:
        """The filters after the over-pressure tap (they feed the zone display)."""
        return tuple(f for f in self.filters if not f.is_spike_rejection)

    def _check(self, path: str) -> list[str]:
        """An alarm must never wait for smoothing, so spike rejection must come first."""
        errors: list[str] = []
        smoothing_seen = False
        for index, spec in enumerate(self.filters):
            if not spec.is_spike_rejection:
                smoothing_seen = True
            elif smoothing_seen:
                key = join_path(path, f"filters[{index}].{spec.kind}")
                errors.append(f"{key}: spike-rejection filters must come before smoothing filters")
        return errors


@dataclass(frozen=True)
class AlarmConfig:
    """How the over-pressure alarm is given; the visual (LED) alarm cannot be disabled."""

    buzzer: bool = field(
        default=True,
        metadata=meta(doc="Also sound the buzzer; the visual LED alarm cannot be disabled."),
    )
    led_active_high: bool = field(default=True, metadata=meta(doc="LED lights on a high GPIO."))
    buzzer_active_high: bool = field(
        default=True, metadata=meta(doc="Buzzer sounds on a high GPIO.")
    )
    silence_s: float = field(
        default=120.0,
        metadata=meta(
            min=10,
            max=600,
            doc="Longest the silence command mutes the buzzer; the LED alarm is never muted.",
        ),
    )


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
        metadata=meta(doc="Lid switch closes to GND (pull-up); false: to 3.3 V (pull-down)."),
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
    def debounce_s(self) -> float:
        return self.debounce_ms / 1000.0

    @property
    def dose_target_mj_cm2(self) -> float:
        """The dose a dose-mode cycle aims at; null in a file (older examples wrote it) is the
        default."""
        return DEFAULT_DOSE_MJ_CM2 if self.dose_mj_cm2 is None else self.dose_mj_cm2

    @property
    def dose_mode(self) -> bool:
        """A measured irradiance turns dose mode on; the dose has a default."""
        return self.irradiance_mw_cm2 is not None

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


MqttVersion = Literal["5", "3.1.1"]
_TOPIC_LEVEL = r"^[^#+/\x00]+(/[^#+/\x00]+)*$"
_TOPIC_DOC = "topic levels separated by /, without + or #"


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker; with no ca_file the system's trusted CAs are used."""

    enabled: bool = field(default=False, metadata=meta(doc="Connect with TLS."))
    ca_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=_NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="CA certificate(s) (PEM) to trust; null: the system's CAs.",
        ),
    )
    cert_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=_NON_EMPTY, pattern_doc="a non-empty path", doc="Client certificate (PEM)."
        ),
    )
    key_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=_NON_EMPTY, pattern_doc="a non-empty path", doc="Client certificate's key."
        ),
    )

    def _check(self, path: str) -> list[str]:
        """A client certificate needs its key, and a key its certificate."""
        if (self.cert_file is None) != (self.key_file is None):
            given = "cert_file" if self.cert_file is not None else "key_file"
            missing = "key_file" if given == "cert_file" else "cert_file"
            value = getattr(self, given)
            requirement = f"needs {join_path(path, missing)} too"
            return [not_allowed(join_path(path, given), value, requirement)]
        return []


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker, the topics (docs/MQTT.md) and Home Assistant discovery."""

    enabled: bool = field(
        default=True, metadata=meta(doc="Publish to a broker; the local alarm never needs it.")
    )
    host: str = field(
        default="localhost",
        metadata=meta(pattern=r"^[^\s/]+$", pattern_doc="a host name or address", doc="Broker."),
    )
    port: int = field(default=1883, metadata=meta(min=1, max=65535, doc="Broker port."))
    version: MqttVersion = field(
        default="5", metadata=meta(doc='MQTT protocol version: "5" or "3.1.1" (quote it).')
    )
    client_id: str | None = field(
        default=None,
        metadata=meta(
            pattern=r"^[0-9A-Za-z_.-]{1,64}$",
            pattern_doc="1 to 64 of A-Z a-z 0-9 _ . -",
            doc="MQTT client id; null: dermaguard-<device_id>.",
        ),
    )
    keepalive_s: int = field(
        default=30, metadata=meta(min=5, max=3600, doc="Keepalive: how fast a dead link shows.")
    )
    username: str | None = field(
        default=None,
        metadata=meta(pattern=_NON_EMPTY, pattern_doc="a non-empty name", doc="User name."),
    )
    password: str | None = field(
        default=None,
        metadata=meta(
            doc="Password; prefer password_file or $DERMAGUARD_MQTT_PASSWORD. Never logged.",
            secret=True,
        ),
    )
    password_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=_NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="File whose first line is the password (e.g. a systemd credential).",
        ),
    )
    tls: TlsConfig = field(default_factory=TlsConfig, metadata=meta(doc="TLS to the broker."))
    base_topic: str = field(
        default="dermaguard",
        metadata=meta(
            pattern=_TOPIC_LEVEL,
            pattern_doc=_TOPIC_DOC,
            doc="Topics are <base_topic>/<device_id>/...",
        ),
    )
    discovery: bool = field(
        default=True, metadata=meta(doc="Announce the device to Home Assistant.")
    )
    discovery_prefix: str = field(
        default="homeassistant",
        metadata=meta(
            pattern=_TOPIC_LEVEL, pattern_doc=_TOPIC_DOC, doc="Home Assistant's discovery prefix."
        ),
    )
    telemetry_hz: float = field(
        default=10.0,
        metadata=meta(min=1, max=80, doc="Rate of live force messages while in use."),
    )
    commands_per_min: int = field(
        default=30,
        metadata=meta(min=1, max=600, doc="Commands accepted per minute; more are refused."),
    )

    def _check(self, path: str) -> list[str]:
        if self.password is not None and self.password_file is not None:
            requirement = f"give either it or {join_path(path, 'password')}, not both"
            return [not_allowed(join_path(path, "password_file"), self.password_file, requirement)]
        return []


@dataclass(frozen=True)
class WebConfig:
    """``dermaguard web``: the local dashboard, a process apart from the daemon."""

    listen: str = field(
        default="0.0.0.0",
        metadata=meta(
            pattern=r"^[^\s/]+$",
            pattern_doc="an address to listen on (0.0.0.0: every interface, 127.0.0.1: this Pi)",
            doc="Address the dashboard listens on.",
        ),
    )
    port: int = field(default=8080, metadata=meta(min=1, max=65535, doc="Dashboard port."))
    tls_cert_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=_NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="Certificate chain (PEM) to serve HTTPS; null: plain HTTP on the home network.",
        ),
    )
    tls_key_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=_NON_EMPTY, pattern_doc="a non-empty path", doc="The certificate's key (PEM)."
        ),
    )
    token_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=_NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="Access token (made at first start, mode 0600); null: web-token in state_dir.",
        ),
    )

    def _check(self, path: str) -> list[str]:
        """A certificate needs its key, and a key its certificate."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given = "tls_cert_file" if self.tls_cert_file is not None else "tls_key_file"
            missing = "tls_key_file" if given == "tls_cert_file" else "tls_cert_file"
            requirement = f"needs {join_path(path, missing)} too"
            return [not_allowed(join_path(path, given), getattr(self, given), requirement)]
        return []


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
            pattern=_NON_EMPTY,
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
        if self.case.dose_mode and self.pins.uv_sensor is None:
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
