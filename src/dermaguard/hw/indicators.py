"""The local indicators: an RGB LED and a buzzer, driven through gpiozero.

Alarm patterns borrow from IEC 60601-1-8's priorities so they mean something to a person who has
heard a medical alarm: high priority (over-pressure) flashes red at 2 Hz with a fast 3+2 pulse
burst; medium (sensor fault, unsterile use) flashes yellow at 0.6 Hz with 3 slower pulses; low
(advisories) is a steady cyan with a single pulse. Without an alarm the LED shows the pressure
zone. Nothing here depends on the network, the disk or the engine's queue (safety rule S6): the
pattern threads run on their own once started.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpiozero import RGBLED, Buzzer

from dermaguard.core.events import Priority, ShowIndicators, Zone

Colour = tuple[float, float, float]
Step = tuple[bool, float]  # (on, seconds)

OFF: Colour = (0.0, 0.0, 0.0)
RED: Colour = (1.0, 0.0, 0.0)
YELLOW: Colour = (1.0, 0.6, 0.0)
GREEN: Colour = (0.0, 1.0, 0.0)
BLUE: Colour = (0.0, 0.0, 1.0)
CYAN: Colour = (0.0, 1.0, 1.0)

ZONE_COLOURS: dict[Zone, Colour] = {
    "none": OFF,
    "light": BLUE,
    "ok": GREEN,
    "high": YELLOW,
    "over": RED,
}


def _pulses(n: int, on: float, off: float) -> list[Step]:
    steps: list[Step] = []
    for _ in range(n):
        steps += [(True, on), (False, off)]
    return steps


@dataclass(frozen=True, slots=True)
class AlarmPattern:
    """How one priority looks and sounds; a sound pattern repeats after its last step."""

    colour: Colour
    flash_hz: float | None  # None: steady
    sound: tuple[Step, ...]


_HALF_BURST: list[Step] = [*_pulses(3, 0.1, 0.08), (False, 0.2), *_pulses(2, 0.1, 0.08)]

PATTERNS: dict[Priority, AlarmPattern] = {
    # High: ten pulses per burst (3+2, pause, 3+2), then a pause before the next burst.
    Priority.HIGH: AlarmPattern(RED, 2.0, (*_HALF_BURST, (False, 0.5), *_HALF_BURST, (False, 2.5))),
    Priority.MEDIUM: AlarmPattern(YELLOW, 0.6, (*_pulses(3, 0.2, 0.15), (False, 5.0))),
    Priority.LOW: AlarmPattern(CYAN, None, ((True, 0.2), (False, 3600.0))),
}


class PatternPlayer:
    """Plays on/off steps on a buzzer in a thread; the first step is applied synchronously.

    Applying the first step in the caller keeps alarm latency down to one pin write.
    """

    def __init__(self, buzzer: Buzzer) -> None:
        self._buzzer = buzzer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def play(self, steps: Sequence[Step]) -> None:
        self.stop()
        if not steps:
            return
        self._buzzer.value = steps[0][0]
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(tuple(steps), self._stop), name="buzzer", daemon=True
        )
        self._thread.start()

    def _run(self, steps: tuple[Step, ...], stop: threading.Event) -> None:
        first = True
        while not stop.is_set():
            for on, seconds in steps:
                if not first:
                    self._buzzer.value = on
                first = False
                if stop.wait(seconds):
                    break
        self._buzzer.off()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        self._thread = None
        self._buzzer.off()


class Indicators:
    """Applies :class:`ShowIndicators` effects to the LED and buzzer."""

    def __init__(
        self,
        red: int,
        green: int,
        blue: int,
        buzzer: int,
        *,
        led_active_high: bool = True,
        buzzer_active_high: bool = True,
        buzzer_enabled: bool = True,
        pin_factory: Any = None,
    ) -> None:
        """``pin_factory`` is gpiozero's backend for the pins (``None``: gpiozero's default)."""
        self.led = RGBLED(
            red, green, blue, active_high=led_active_high, pwm=False, pin_factory=pin_factory
        )
        self.buzzer = Buzzer(buzzer, active_high=buzzer_active_high, pin_factory=pin_factory)
        self.buzzer_enabled = buzzer_enabled
        self._player = PatternPlayer(self.buzzer)
        self._current: ShowIndicators | None = None
        self._lock = threading.Lock()

    def show(self, state: ShowIndicators) -> None:
        """Switch to ``state``; re-showing the same state does not restart a pattern.

        ``state.silenced`` stops the buzzer only: the LED shows the alarm whatever (S11).
        """
        with self._lock:
            previous, self._current = self._current, state
            if previous is not None and (previous.alarm, previous.zone, previous.silenced) == (
                state.alarm,
                state.zone,
                state.silenced,
            ):
                return
            if state.alarm is not None:
                pattern = PATTERNS[state.alarm]
                sound = self.buzzer_enabled and not state.silenced
                was_sounding = (
                    previous is not None and previous.alarm == state.alarm and not previous.silenced
                )
                if sound and not was_sounding:
                    self._player.play(pattern.sound)
                elif not sound:
                    self._player.stop()
                if previous is None or (previous.alarm, previous.zone) != (state.alarm, state.zone):
                    self._show_colour(pattern.colour, pattern.flash_hz)
            else:
                self._player.stop()
                colour = ZONE_COLOURS[state.zone] if state.zone is not None else YELLOW
                self._show_colour(colour, None)

    def _show_colour(self, colour: Colour, flash_hz: float | None) -> None:
        if flash_hz is None:
            self.led.color = _binary(colour)
        else:
            half = 0.5 / flash_hz
            self.led.blink(on_time=half, off_time=half, on_color=_binary(colour), background=True)

    def off(self) -> None:
        with self._lock:
            self._player.stop()
            self.led.off()
            self._current = None

    def close(self) -> None:
        self.off()
        self.led.close()
        self.buzzer.close()


def _binary(colour: Colour) -> Colour:
    """Without PWM a channel is on or off: anything lit counts as on."""
    return tuple(1.0 if c > 0.0 else 0.0 for c in colour)  # type: ignore[return-value]
