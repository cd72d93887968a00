"""Opening the HX711 driver for the configured interface.

``spi`` (the default) clocks PD_SCK from the SPI controller; ``gpio`` bit-banges it. Whether the
chip is real or emulated is not decided here: the assembly (:mod:`dermaguard.daemon.app`) passes
the simulation's bus and limits in, so this module never loads the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from dermaguard.common.clock import Clock
from dermaguard.config.load import Config
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.hx711_protocol import LoadCellADC
from dermaguard.hw.hx711_spi import HX711Spi, SpiBus, open_spi


class ReopenableBus(SpiBus, Protocol):
    """A bus handed in already open (the simulation's) that can be opened again."""

    def reopen(self) -> SpiBus: ...


def chip_pins(config: Config) -> tuple[int, int | None]:
    """Where the emulated chip's DOUT is seen and which GPIO drives PD_SCK (None: the bus)."""
    pins = config.pins
    if config.hx711.interface == "gpio":
        return pins.hx711_dout, pins.hx711_sck
    ready = pins.hx711_ready
    return (config.hx711.spi.pins()["miso"] if ready is None else ready), None


def open_load_cell(
    config: Config,
    pin_factory: Any,
    clock: Clock,
    *,
    bus: ReopenableBus | None = None,
    max_clock_high_us: float | None = None,
) -> LoadCellADC:
    """The HX711 driver for ``config``, reset so that its gain is known.

    ``bus`` is an SPI bus already open (a simulated one); ``None`` opens the configured bus
    through ``pin_factory``. Either way the driver can open it again the same way
    (:meth:`HX711Spi.reopen`, after repeated bus errors). ``max_clock_high_us`` replaces the
    configured limit on a bit-banged clock-high phase. A previous process may have left the
    chip at another gain, hence the reset.
    """
    hx = config.hx711
    driver: LoadCellADC
    if hx.interface == "spi":
        spi = hx.spi
        open_bus: Callable[[], SpiBus]
        if bus is None:
            open_bus = partial(
                open_spi, pin_factory, port=spi.port, device=spi.device, hz=spi.hz, mode=spi.mode
            )
            first: SpiBus = open_bus()
        else:
            first, open_bus = bus, bus.reopen
        try:
            driver = HX711Spi(
                first,
                gain=hx.gain,
                rate_sps=hx.rate_sps,
                hz=spi.hz,
                ready_pin=config.pins.hx711_ready,
                pin_factory=pin_factory,
                clock=clock,
                open_bus=open_bus,
            )
        except BaseException:
            first.close()
            raise
    else:
        if max_clock_high_us is None:
            max_clock_high_us = hx.max_clock_high_us
        driver = HX711(
            config.pins.hx711_dout,
            config.pins.hx711_sck,
            gain=hx.gain,
            rate_sps=hx.rate_sps,
            max_clock_high_us=max_clock_high_us,
            pin_factory=pin_factory,
            clock=clock,
        )
    try:
        driver.reset()
    except BaseException:
        driver.close()
        raise
    return driver
