"""The fault catalogue and the seeded schedule drawn from it.

A schedule is a pure function of its seed: the scenario (when the lid closes, how hard and when
the roller is pressed) and every fault with its start and duration. It fixes what happens and
when in scenario time; it cannot fix how the daemon's threads interleave around it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: Faults played against the daemon assembled in this process (most of them, fast).
THREAD_KINDS = (
    "exc_engine",
    "exc_sampler",
    "exc_ticker",
    "exc_store_writer",
    "exc_mqtt",
    "exc_status_file",
    "exc_save_calibration",
)
DISK_KINDS = (
    "disk_full_start",
    "disk_full_mid",
    "disk_readonly_start",
    "disk_readonly_mid",
    "disk_corrupt_start",
    "disk_corrupt_mid",
)
SENSOR_KINDS = ("spi_burst", "unplug", "saturate_high", "overload")
OTHER_KINDS = ("engine_stall", "broker_loss", "clock_step", "retained_command")
INPROC_KINDS = THREAD_KINDS + DISK_KINDS + SENSOR_KINDS + OTHER_KINDS
#: Faults that need real processes: a daemon killed and restarted, two daemons at once, the
#: calibration CLI with the reference taken the wrong way round.
PROC_KINDS = ("sigkill_restart", "second_daemon", "reversed_reference")
#: The case's own hardware failing, for good or (a LED's loose connector) on and off for a
#: while. A schedule has at most one of them: two at once, a welded S1b and a shorted driver,
#: light the LED with the lid open, which no software can stop. Their schedules have a UV
#: sensor. Drawn after everything else from the seed, so a seed drawn before they existed
#: keeps its faults, pushes and lid, and may gain one.
CASE_KINDS = ("uv_led_dies", "uv_led_flickers", "uv_driver_shorted", "s1b_welded")
#: One schedule in CASE_EVERY gains a case fault (when the kinds drawn from allow one).
CASE_EVERY = 4
KINDS = INPROC_KINDS + PROC_KINDS + CASE_KINDS
#: Kinds that need the test broker.
BROKER_KINDS = frozenset({"exc_mqtt", "broker_loss", "retained_command"})
#: The faults that cannot clear by themselves: the alarm path's own threads. Any other fault
#: is transient (docs/RELIABILITY.md): the daemon must ride it out, never exit.
FATAL_KINDS = frozenset({"exc_engine", "exc_sampler"})
#: Every subprocess schedule is one of these; one schedule in PROC_EVERY is a subprocess one.
PROC_EVERY = 12

#: Scenario seconds; the sample rate is the default 80/s.
CYCLE_S = 1.5
DURATION_S = 8.0


@dataclass(frozen=True)
class Fault:
    kind: str
    t: float  # scenario seconds
    duration_s: float = 0.0  # scenario seconds, or real seconds for engine_stall
    amount: float = 0.0  # a burst length, a force, a clock step


@dataclass(frozen=True)
class Schedule:
    seed: int
    faults: tuple[Fault, ...]
    #: The two pushes (start, force) and whether the first cycle is cut by opening the lid.
    pushes: tuple[tuple[float, float], ...]
    lid_early: bool
    tare_at: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(f.kind for f in self.faults)

    @property
    def needs_broker(self) -> bool:
        return any(k in BROKER_KINDS for k in self.kinds)

    @property
    def in_process(self) -> bool:
        return not any(k in PROC_KINDS for k in self.kinds)

    @property
    def has_uv_sensor(self) -> bool:
        """The case's hardware fails: the daemon has a UV sensor to see it by."""
        return any(k in CASE_KINDS for k in self.kinds)


#: When the schedule's tare is sent: docked, a second of rest after the last push (which ends by
#: 4.8 s), so the daemon accepts it and a ``save-calibration`` thread exists for its fault.
TARE_AT_S = 6.0


def draw_fault(rng: random.Random, kind: str) -> Fault:
    """One fault of ``kind`` at a random time of the scenario."""
    if kind.endswith("_start") or kind == "retained_command":
        return Fault(kind, 0.0, rng.uniform(1.0, 6.0))
    if kind == "engine_stall":
        # On the first push, so that an alarm is due while the engine cannot give it.
        return Fault(kind, 2.8, rng.uniform(1.5, 2.5))
    if kind == "spi_burst":
        return Fault(kind, rng.uniform(0.3, 7.0), 0.0, float(rng.choice((1, 2, 5, 20, 200))))
    if kind == "clock_step":
        return Fault(kind, rng.uniform(0.3, 7.0), 0.0, rng.choice((-3600.0, 3600.0, -86400.0)))
    if kind == "overload":
        return Fault(kind, 0.0, 0.5, rng.uniform(55.0, 100.0))  # capacity_n: 50 N
    return Fault(kind, rng.uniform(0.3, 7.0), rng.uniform(0.1, 1.5))


def make_schedule(seed: int, kinds: tuple[str, ...] = KINDS) -> Schedule:
    """The schedule of ``seed``, drawing only from ``kinds``."""
    rng = random.Random(seed)
    inproc = [k for k in kinds if k in INPROC_KINDS]
    procs = [k for k in kinds if k in PROC_KINDS]
    case = [k for k in kinds if k in CASE_KINDS]
    if procs and (not (inproc or case) or rng.randrange(PROC_EVERY) == 0):
        chosen = [rng.choice(procs)]
    elif inproc:
        n = rng.choice((1, 1, 2, 3))
        chosen = rng.sample(inproc, min(n, len(inproc)))
    else:
        chosen = []
    drawn = [draw_fault(rng, k) for k in chosen]
    pushes = ((2.9, rng.uniform(5.0, 9.0)), (rng.uniform(4.0, 4.3), rng.uniform(4.6, 7.0)))
    overload = next((f for f in drawn if f.kind == "overload"), None)
    if overload is not None:
        pushes = ((2.9, overload.amount), pushes[1])
    lid_early = rng.random() < 0.15
    in_process = not any(k in PROC_KINDS for k in chosen)
    if case and in_process and (not chosen or rng.randrange(CASE_EVERY) == 0):
        drawn.append(draw_fault(rng, rng.choice(case)))
    faults = tuple(sorted(drawn, key=lambda f: f.t))
    return Schedule(seed, faults, pushes, lid_early=lid_early, tare_at=TARE_AT_S)
