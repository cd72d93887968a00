""" "Ready to roll?": one verdict with its reasons, and what to do for each reason that says no.

Pure: it takes what the dashboard knows (the device's live state, which carries the device's
own rest rule and history, and the calibration's presence) and the care rules, so every wording
is unit-tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from dermaguard.mqtt.decode import Snapshot

Verdict = Literal["yes", "no", "unknown", "session"]


@dataclass(frozen=True, slots=True)
class Reason:
    """One check: ``ok`` None when it cannot be known (the device is offline)."""

    key: str
    ok: bool | None
    text: str
    todo: str | None = None
    #: A countdown (a running cycle's time left), which the page keeps counting down.
    left_s: float | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    verdict: Verdict
    headline: str
    reasons: tuple[Reason, ...]
    #: Which device and history the verdict speaks for.
    about: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "headline": self.headline,
            "about": self.about,
            "reasons": [asdict(r) for r in self.reasons],
        }


def _when(moment: datetime, now: datetime, tz: tzinfo | None) -> str:
    """``09:02`` today, ``Sat 09:02`` within a week, ``12 Dec 09:02`` further."""
    local, today = moment.astimezone(tz), now.astimezone(tz)
    days = (local.date() - today.date()).days
    if days == 0:
        return local.strftime("%H:%M")
    if 0 < days < 7:
        return local.strftime("%a %H:%M")
    return local.strftime("%d %b %H:%M")


def _span(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} days" + (f" {hours} h" if hours else "")


def _rest(snapshot: Snapshot, now: datetime, rest_s: float, tz: tzinfo | None) -> Reason:
    """The rest rule as the device itself applies it (S10): its own last session, its own next
    allowed time, never another history's retained summary."""
    if not snapshot.rest_known:
        return Reason("rest", None, "rest unknown: the device does not publish its rest rule")
    if snapshot.state == "in_use":
        if snapshot.session_too_soon:
            return Reason(
                "rest", False, f"this session started too soon (the skin needs {_span(rest_s)})"
            )
        return Reason("rest", True, "this session started after a full rest")
    ended, allowed = snapshot.last_session_ended_at, snapshot.next_allowed_at
    if ended is None and snapshot.last_session_no == 0:
        return Reason("rest", True, "no earlier session recorded")
    if ended is None or allowed is None:
        # The device cannot measure the rest: its clock, or the one that dated the last
        # session, was not synchronised (a Pi has no real-time clock).
        return Reason(
            "rest",
            None,
            "the rest since the last session cannot be checked: the clock was not synchronised",
            f"wait {_span(rest_s)} after it yourself",
        )
    rested = (now - ended).total_seconds()
    if now >= allowed:
        return Reason("rest", True, f"rested {_span(rested)} since the last session")
    return Reason(
        "rest",
        False,
        f"only {_span(rested)} since the last session (the skin needs {_span(rest_s)})",
        f"next allowed {_when(allowed, now, tz)}",
    )


def _disinfection(
    snapshot: Snapshot, now: datetime, sterile_left_s: float | None, remaining_s: float | None,
    tz: tzinfo | None,
) -> Reason:  # fmt: skip
    if snapshot.state == "in_use":
        number = snapshot.session_no
        if snapshot.session_sterile_at_start is False:
            return Reason(
                "disinfected", False, f"session {number} started without disinfection",
                "after this session, put the roller in the case and close the lid",
            )  # fmt: skip
        how = "disinfected" if snapshot.session_sterile_at_start else "(how is unknown)"
        return Reason("disinfected", True, f"session {number} started {how}")
    if snapshot.case == "sterilizing":
        return Reason(
            "disinfected", False, "a UV-C cycle is running", "wait for the cycle to end",
            left_s=remaining_s,
        )  # fmt: skip
    if snapshot.sterile:
        if snapshot.sterile_until is None:
            text = "disinfected, while the roller stays in the closed case"
        elif sterile_left_s is not None:
            until = _when(snapshot.sterile_until, now, tz)
            text = f"disinfected until {until} ({_span(sterile_left_s)} left)"
        else:
            text = f"disinfected until {_when(snapshot.sterile_until, now, tz)}"
        return Reason("disinfected", True, text)
    if snapshot.docked:
        todo = (
            "close the lid to start a cycle"
            if not snapshot.lid_closed
            else "press Disinfect to start a cycle"
        )
    else:
        todo = "put the roller in the case and close the lid to start a cycle"
    aborted = " (the last cycle was aborted)" if snapshot.case == "aborted" else ""
    text = "not disinfected" + aborted
    return Reason("disinfected", False, text, todo)


def _roller(snapshot: Snapshot, replace_after_uses: int) -> Reason:
    if snapshot.roller_uses >= replace_after_uses:
        return Reason(
            "roller",
            False,
            f"roller {snapshot.roller_id} used {snapshot.roller_uses} times "
            f"(replace after {replace_after_uses})",
            "fit a new roller, then press New roller",
        )
    return Reason(
        "roller", True, f"roller used {snapshot.roller_uses} of {replace_after_uses} times"
    )


def _sensor(snapshot: Snapshot) -> Reason:
    if snapshot.fault is not None or snapshot.force_n is None:
        fault = snapshot.fault or "no valid reading"
        return Reason(
            "sensor",
            False,
            f"the force sensor is not healthy ({fault}): the pressure alarm cannot work",
            "check the load cell wiring (dermaguard check-hardware)",
        )
    return Reason("sensor", True, "force sensor healthy")


def _last_known(reason: Reason) -> Reason:
    """A value from a device that is not online now: shown, never as a yes or a no."""
    return Reason(reason.key, None, f"last known: {reason.text}", None)


def _about(device: str, snapshot: Snapshot | None, now: datetime, tz: tzinfo | None) -> str:
    """Which device and which history the verdict speaks for."""
    if snapshot is None or not snapshot.rest_known:
        return f"Device {device}"
    ended = snapshot.last_session_ended_at
    if snapshot.last_session_no == 0 or ended is None:
        return f"Device {device}: no session in its history yet"
    return (
        f"Device {device}: its history holds {snapshot.last_session_no} finished session"
        f"{'s' if snapshot.last_session_no != 1 else ''}, the last ended {_when(ended, now, tz)}"
    )


def readiness(
    snapshot: Snapshot | None,
    *,
    device: str,
    online: bool,
    now: datetime,
    sterile_left_s: float | None,
    remaining_s: float | None,
    rest_s: float,
    replace_after_uses: int,
    calibrated: bool,
    tz: tzinfo | None = None,
) -> Readiness:
    """The verdict: yes only when every reason holds and the device is online now; a value
    from a device that is offline (or behind a broker that is down) is never a yes or a no."""
    reasons: list[Reason] = []
    if snapshot is None or not online:
        reasons.append(
            Reason(
                "device",
                None,
                "the device is offline" if snapshot is not None else "no data from the device",
                "start the dermaguard service (or check the broker) and wait for it to show online",
            )
        )
    if snapshot is None:
        reasons += [
            Reason("disinfected", None, "disinfection unknown"),
            Reason("rest", None, "rest since the last session unknown"),
            Reason("roller", None, "roller uses unknown"),
            Reason("sensor", None, "sensor state unknown"),
        ]
    else:
        device_reasons = [
            _disinfection(snapshot, now, sterile_left_s, remaining_s, tz),
            _rest(snapshot, now, rest_s, tz),
            _roller(snapshot, replace_after_uses),
            _sensor(snapshot),
        ]
        reasons += device_reasons if online else [_last_known(r) for r in device_reasons]
    if calibrated:
        reasons.append(Reason("calibration", True, "calibration present"))
    else:
        reasons.append(
            Reason(
                "calibration",
                False,
                "no calibration: forces cannot be trusted",
                "run dermaguard calibrate on the Pi",
            )
        )
    about = _about(device, snapshot, now, tz)
    verdict: Verdict
    if snapshot is None or not online:
        verdict, headline = "unknown", "Cannot tell"
    elif snapshot.state == "in_use":
        verdict, headline = "session", "A session is in progress"
    elif any(r.ok is False for r in reasons):
        verdict, headline = "no", "Not yet"
    elif any(r.ok is None for r in reasons):
        verdict, headline = "unknown", "Cannot tell"
    else:
        verdict, headline = "yes", "Yes, ready to roll"
    return Readiness(verdict, headline, tuple(reasons), about)
