"""Sessions: when the roller is in use, what happened, and the care rules around it.

A session opens when the roller leaves the dock and *starts* at its first contact with skin
(taking the roller out to look at it is not a use). It ends when the roller is docked again, or
after ``idle_timeout_s`` without contact; a later contact out of the dock starts a new one.

Durations use the monotonic input time, so a wall-clock jump mid-session changes nothing; the
wall time (an input, for records) dates the session and measures the rest between sessions,
which spans reboots. A Pi has no real-time clock, so the wall time is trusted only while the
shell reports it synchronised (:class:`~dermaguard.core.events.ClockSync`). The rest (S10) is
the wall-time difference when both ends were on a synchronised clock, else the monotonic one
when the last session ended in this run, else unknown: then ``too_soon`` is ``None`` and
``rest_unknown`` says why — never a guess that the rest was long or short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import CONTACT_ZONES, Event, EventType, Zone
from dermaguard.core.passes import (
    MAX_SAMPLE_GAP_S,  # a gap longer than this counts as no time (sensor gaps)
    PassParams,
    PassSegmenter,
    technique_summary,
)

#: Why the rest since the last session is unknown (``rest_unknown``): the clock is not
#: synchronised now, or the last session (in an earlier run) was dated by one that was not.
REST_CLOCK_NOT_SYNCED = "clock_not_synchronized"
REST_LAST_TIME_UNKNOWN = "last_session_time_unknown"


def next_allowed_wall(last_end_wall: float, rest_s: float) -> float:
    """The rest rule (S10), in one place: the earliest wall time (epoch s) a session may start.

    The rest counts from the last session's recorded end, its ``ended_at`` (docking, or its last
    contact when it ended idle): a session starting before this time is too soon. The tracker,
    ``dermaguard status`` and the dashboard all ask this, so they cannot disagree.
    """
    return last_end_wall + rest_s


@dataclass(frozen=True, slots=True)
class SessionParams:
    """The session rules, taken from the config.

    No defaults here: the config schema is the one place they live (``dermaguard.config.params``
    builds these from a config or its defaults).
    """

    idle_timeout_s: float
    rest_s: float
    replace_after_uses: int
    #: How the force is cut into passes; ``None``: no technique summary (it reads as unknown).
    passes: PassParams | None


@dataclass(slots=True)
class RollerState:
    roller_id: int = 1
    uses: int = 0


@dataclass(slots=True)
class _Open:
    """The running session's accumulators."""

    session_no: int
    t_start: float
    wall_start: float
    sterile: bool
    cycle_id: int | None
    rest_interval_s: float | None
    too_soon: bool | None  # None: the rest is unknown (rest_unknown says why)
    roller_use: int
    last_t: float
    last_contact_t: float
    contact_until: float  # the end of the contact counted so far (the last held interval's end)
    contact_s: float = 0.0
    zone_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CONTACT_ZONES, 0.0))
    peak_n: float | None = None
    force_time: float = 0.0  # ∫ force dt over contact, for the mean
    over_episodes: int = 0
    over_since: float | None = None
    longest_over_s: float = 0.0
    last_zone: Zone | None = None
    last_force_n: float | None = None
    clock_synced: bool = True  # the wall clock was synchronised all through (its times are real)
    rest_unknown: str | None = None
    #: Passes and the longest time in the good zone (``None``: not measured, see SessionParams).
    segmenter: PassSegmenter | None = None


class SessionTracker:
    """Holds the open session and the history the care rules need."""

    def __init__(
        self,
        params: SessionParams,
        *,
        last_session_no: int = 0,
        last_end_wall: float | None = None,
        last_end_synced: bool = True,
        roller: RollerState | None = None,
    ) -> None:
        self.params = params
        self.last_session_no = last_session_no
        self.last_end_wall = last_end_wall
        self.last_end_synced = last_end_synced  # last_end_wall came from a synchronised clock
        self.last_end_t: float | None = None  # the last end on this run's monotonic clock
        self.clock_synced = True  # until the shell reports otherwise (tests, replays)
        self._clock_reported = False
        self.roller = roller if roller is not None else RollerState()
        self.current: _Open | None = None
        self.out_of_dock_since: float | None = None
        # After an idle end the roller is still out of the dock, but the next session dates
        # from its own first contact, not from when the dock was left or the timeout fired.
        self._from_contact = False

    # -- queries -----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.current is not None

    def next_allowed_wall(self) -> float | None:
        """When the minimum rest after the last session ends (S10); ``None`` when unknown."""
        if self.last_end_wall is None or not (self.clock_synced and self.last_end_synced):
            return None
        return next_allowed_wall(self.last_end_wall, self.params.rest_s)

    def rest(self, t: float, wall: float) -> tuple[float | None, str | None]:
        """The rest since the last session: (seconds, ``None``), or (``None``, why it is
        unknown); (``None``, ``None``) when there was no earlier session."""
        trusted = self.clock_synced and self.last_end_synced
        if self.last_end_t is not None and not trusted:
            return t - self.last_end_t, None  # ended in this run: the monotonic clock knows
        if self.last_end_wall is None:
            return None, None
        if trusted:
            return wall - self.last_end_wall, None
        return None, REST_CLOCK_NOT_SYNCED if not self.clock_synced else REST_LAST_TIME_UNKNOWN

    # -- inputs ------------------------------------------------------------------------------

    def clock(self, t: float, wall: float, synced: bool) -> list[Event]:
        """The shell's report on the wall clock: ``clock_sync`` at every change, and at the
        first report if it is not synchronised, so the history and MQTT say when times are
        guesses. When it becomes synchronised, what this run dated by the guess (the last end,
        the open session's start) is dated again from the monotonic clock."""
        changed = synced != self.clock_synced or (not self._clock_reported and not synced)
        if synced and not self.clock_synced:
            if self.last_end_t is not None and not self.last_end_synced:
                self.last_end_wall = wall - (t - self.last_end_t)
                self.last_end_synced = True
            if self.current is not None and not self.current.clock_synced:
                self.current.wall_start = wall - (t - self.current.t_start)
                self.current.clock_synced = True
        self.clock_synced = synced
        self._clock_reported = True
        if self.current is not None and not synced:
            self.current.clock_synced = False
        if not changed:
            return []
        return [Event(EventType.CLOCK_SYNC, t, {"synced": synced})]

    def undocked(self, t: float) -> None:
        self.out_of_dock_since = t
        self._from_contact = False

    def docked(self, t: float, wall: float) -> list[Event]:
        self.out_of_dock_since = None
        self._from_contact = False
        return self._end(t, wall, "docked")

    def contact(self, t: float, wall: float, sterile: bool, cycle_id: int | None) -> list[Event]:
        """First contact out of the dock with no session open: the session starts (S8, S10)."""
        if self.current is not None or self.out_of_dock_since is None:
            return []
        self.last_session_no += 1
        self.roller.uses += 1
        rest, unknown = self.rest(t, wall)
        too_soon: bool | None = None if unknown else rest is not None and rest < self.params.rest_s
        allowed = None if rest is None else wall + (self.params.rest_s - rest)
        # The session dates from leaving the dock (or, after an idle end, from this contact).
        t_start = t if self._from_contact else min(self.out_of_dock_since, t)
        self._from_contact = False
        wall_start = wall - (t - t_start)
        s = _Open(
            session_no=self.last_session_no,
            t_start=t_start,
            wall_start=wall_start,
            sterile=sterile,
            cycle_id=cycle_id,
            rest_interval_s=None if rest is None else round(rest, 1),
            too_soon=too_soon,
            roller_use=self.roller.uses,
            last_t=t,
            last_contact_t=t,
            contact_until=t,
            clock_synced=self.clock_synced,
            rest_unknown=unknown,
            segmenter=None if self.params.passes is None else PassSegmenter(self.params.passes),
        )
        self.current = s
        data: dict[str, Any] = {
            "session_no": s.session_no,
            "started_at": iso_utc(wall_start),
            "sterile": sterile,
            "cycle_id": cycle_id,
            "rest_interval_s": s.rest_interval_s,
            "too_soon": too_soon,
            "roller_id": self.roller.roller_id,
            "roller_use": s.roller_use,
            # The start on this process's monotonic clock, which the stored force
            # trace is timed from (the wall clock may jump; this does not).
            "t_start": round(s.t_start, 6),
        }
        data.update(_clock_fields(s))
        events = [Event(EventType.SESSION_STARTED, t, data)]
        if unknown is not None:
            events.append(
                Event(
                    EventType.REST_UNKNOWN,
                    t,
                    {
                        "session_no": s.session_no,
                        "reason": unknown,
                        "min_rest_s": self.params.rest_s,
                    },
                )
            )
        if too_soon:
            assert allowed is not None
            events.append(
                Event(
                    EventType.TOO_SOON,
                    t,
                    {
                        "session_no": s.session_no,
                        "rest_interval_s": s.rest_interval_s,
                        "min_rest_s": self.params.rest_s,
                        "next_allowed_at": iso_utc(allowed),
                    },
                )
            )
        if self.roller.uses >= self.params.replace_after_uses:
            events.append(
                Event(
                    EventType.ROLLER_REPLACE_DUE,
                    t,
                    {
                        "roller_id": self.roller.roller_id,
                        "uses": self.roller.uses,
                        "limit": self.params.replace_after_uses,
                    },
                )
            )
        return events

    def sample(
        self, t: float, force_n: float | None, zone: Zone | None, over: bool | None = None
    ) -> None:
        """Accumulate one processed sample into the open session. ``over``: an over-pressure
        episode is open (the engine's alarm, which a fault does not end); by default, the zone
        is ``over``."""
        s = self.current
        if s is None:
            return
        # Each interval belongs to the sample that began it (sample and hold), for the contact
        # time, the zone times and the force integral alike: with one rule, a fault or a
        # recovery cannot count time as contact without its force, and the mean is a mean.
        dt = t - s.last_t
        s.last_t = t
        held_zone, held_force = s.last_zone, s.last_force_n
        held_contact = held_zone not in (None, "none")
        if 0.0 < dt <= MAX_SAMPLE_GAP_S and held_contact and held_force is not None:
            s.contact_s += dt
            s.zone_s[str(held_zone)] += dt
            s.force_time += held_force * dt
            s.contact_until = t
        if zone not in (None, "none") and force_n is not None:
            s.last_contact_t = t
            s.peak_n = force_n if s.peak_n is None else max(s.peak_n, force_n)
        if over is None:
            over = zone == "over"
        if over and s.over_since is None:
            s.over_episodes += 1
            s.over_since = t
        elif not over and s.over_since is not None:
            s.longest_over_s = max(s.longest_over_s, t - s.over_since)
            s.over_since = None
        s.last_zone, s.last_force_n = zone, force_n
        if s.segmenter is not None:
            s.segmenter.feed(t, force_n, zone)

    def tick(self, t: float, wall: float) -> list[Event]:
        """Ends a session idle for longer than the timeout."""
        s = self.current
        if s is None or t - s.last_contact_t < self.params.idle_timeout_s:
            return []
        # The session ends where its contact ended: the last contact reading held until the
        # reading after it, so the duration always covers the contact time.
        end = max(s.last_contact_t, s.contact_until)
        events = self._end(end, wall - (t - end), "idle_timeout")
        # Still out of the dock: the next contact starts a new session from that contact.
        self._from_contact = True
        return events

    def shutdown(self, t: float, wall: float) -> list[Event]:
        return self._end(t, wall, "shutdown")

    def new_roller(self, roller_id: int) -> None:
        self.roller = RollerState(roller_id, 0)

    # -- internals ---------------------------------------------------------------------------

    def _end(self, t: float, wall: float, reason: str) -> list[Event]:
        s = self.current
        if s is None:
            return []
        self.current = None
        if s.over_since is not None:
            s.longest_over_s = max(s.longest_over_s, t - s.over_since)
        self.last_end_wall = wall
        self.last_end_t = t
        self.last_end_synced = self.clock_synced
        summary = self.summary(s, t, wall, reason)
        return [Event(EventType.SESSION_ENDED, t, summary)]

    def summary(self, s: _Open, t: float, wall: float, reason: str) -> dict[str, Any]:
        technique = None
        if s.segmenter is not None:
            seg = s.segmenter
            seg.finish()
            technique = technique_summary(seg.passes, s.zone_s, s.contact_s, seg.longest_ok_s)
        return {
            "session_no": s.session_no,
            "started_at": iso_utc(s.wall_start),
            "ended_at": iso_utc(wall),
            "duration_s": round(t - s.t_start, 2),
            "contact_s": round(s.contact_s, 2),
            "zone_s": {k: round(v, 2) for k, v in s.zone_s.items()},
            "peak_n": None if s.peak_n is None else round(s.peak_n, 3),
            "mean_n": round(s.force_time / s.contact_s, 3) if s.contact_s > 0 else None,
            "over_episodes": s.over_episodes,
            "longest_over_s": round(s.longest_over_s, 2),
            "sterile_at_start": s.sterile,
            "cycle_id": s.cycle_id,
            "rest_interval_s": s.rest_interval_s,
            "too_soon": s.too_soon,
            "roller_id": self.roller.roller_id,
            "roller_use": s.roller_use,
            "end_reason": reason,
            "technique": technique,
        } | _clock_fields(s)


def _clock_fields(s: _Open) -> dict[str, Any]:
    """``clock_synced: false`` (its times are the unsynchronised clock's) and ``rest_unknown``
    (why the rest could not be checked), each only when it applies."""
    out: dict[str, Any] = {}
    if not s.clock_synced:
        out["clock_synced"] = False
    if s.rest_unknown is not None:
        out["rest_unknown"] = s.rest_unknown
    return out


def replay_summary(
    start: dict[str, Any],
    trace: list[tuple[float, float | None, Zone | None]],
    *,
    started_wall: float,
    duration_s: float,
    over_episodes: int,
    longest_over_s: float,
    reason: str,
) -> dict[str, Any]:
    """A ``session_ended`` summary rebuilt from a stored trace (times since the start), by the
    tracker's own accumulation and summary, so a recovered session reads like a real one.

    ``start`` is the ``session_started`` data. A stored trace is downsampled and may miss a
    short excursion into ``over``, so the caller counts the episodes (from its event log).
    """

    def at(key: str) -> Any:  # a damaged record may lack a key: it stays None in the summary
        return start.get(key)

    # A replay only accumulates samples and writes the summary: no rule (idle, rest, roller
    # limit) is consulted, so the parameters are inert.
    # Without the config's pass thresholds the technique is left unknown.
    inert = SessionParams(idle_timeout_s=math.inf, rest_s=0.0, replace_after_uses=0, passes=None)
    tracker = SessionTracker(inert, roller=RollerState(at("roller_id"), 0))
    s = _Open(
        session_no=at("session_no"),
        t_start=0.0,
        wall_start=started_wall,
        sterile=at("sterile"),
        cycle_id=at("cycle_id"),
        rest_interval_s=at("rest_interval_s"),
        too_soon=at("too_soon"),
        roller_use=at("roller_use"),
        last_t=trace[0][0] if trace else 0.0,
        last_contact_t=0.0,
        contact_until=0.0,
        clock_synced=at("clock_synced") is not False,
        rest_unknown=at("rest_unknown"),
    )
    tracker.current = s
    for t, force_n, zone in trace:
        tracker.sample(t, force_n, zone)
    s.over_episodes, s.longest_over_s = over_episodes, longest_over_s
    return tracker.summary(s, duration_s, started_wall + duration_s, reason)
