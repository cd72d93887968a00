"""Opening the HX711 driver for the configured interface, on real or simulated hardware.

``spi`` (the default) clocks PD_SCK from the SPI controller; ``gpio`` bit-banges it. In a
simulation the emulated chip sits behind the same interface: a simulated SPI bus, or mock pins.
"""

from __future__ import annotations

from typing import Any

from dermaguard.common.clock import Clock
from dermaguard.config.load import Config
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.hx711_protocol import LoadCellADC
from dermaguard.hw.hx711_spi import HX711Spi, open_spi
from dermaguard.sim.hardware import SIM_POWER_DOWN_NS, SimHardware

#: The driver's limit on a bit-banged clock-high phase in a simulation: below the emulated
#: chip's relaxed power-down (see SimHardware), never below the configured limit.
SIM_MAX_CLOCK_HIGH_US = SIM_POWER_DOWN_NS / 1000 * 0.8


def chip_pins(config: Config) -> tuple[int, int | None]:
    """Where the emulated chip's DOUT is seen and which GPIO drives PD_SCK (None: the bus)."""
    pins = config.pins
    if config.hx711.interface == "gpio":
        return pins.hx711_dout, pins.hx711_sck
    ready = pins.hx711_ready
    return (config.hx711.spi.pins()["miso"] if ready is None else ready), None


def open_load_cell(
    config: Config, pin_factory: Any, clock: Clock, sim: SimHardware | None
) -> LoadCellADC:
    """The HX711 driver for ``config``, reset so that its gain is known.

    A previous process may have left the chip at another gain, hence the reset.
    """
    hx = config.hx711
    driver: LoadCellADC
    if hx.interface == "spi":
        spi = hx.spi
        if sim is not None:
            assert sim.bus is not None, "the simulation was built for the gpio interface"
            bus: Any = sim.bus
        else:
            bus = open_spi(pin_factory, port=spi.port, device=spi.device, hz=spi.hz, mode=spi.mode)
        try:
            driver = HX711Spi(
                bus,
                gain=hx.gain,
                rate_sps=hx.rate_sps,
                hz=spi.hz,
                ready_pin=config.pins.hx711_ready,
                pin_factory=pin_factory,
                clock=clock,
            )
        except BaseException:
            bus.close()
            raise
    else:
        max_high_us = hx.max_clock_high_us
        if sim is not None:
            max_high_us = max(max_high_us, SIM_MAX_CLOCK_HIGH_US)
        driver = HX711(
            config.pins.hx711_dout,
            config.pins.hx711_sck,
            gain=hx.gain,
            rate_sps=hx.rate_sps,
            max_clock_high_us=max_high_us,
            pin_factory=pin_factory,
        )
    try:
        driver.reset()
    except BaseException:
        driver.close()
        raise
    return driver
