""" "Ready to roll?": one verdict with its reasons, and what to do for each reason that says no.

Pure: it takes what the dashboard knows (the device's live state, the last finished session's
end, the calibration's presence) and the care rules, so every wording is unit-tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

from dermaguard.core.session import next_allowed_wall
from dermaguard.mqtt.decode import Snapshot

Verdict = Literal["yes", "no", "unknown"]


@dataclass(frozen=True, slots=True)
class Reason:
    """One check: ``ok`` None when it cannot be known (the device is offline)."""

    key: str
    ok: bool | None
    text: str
    todo: str | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    verdict: Verdict
    headline: str
    reasons: tuple[Reason, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "headline": self.headline,
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


def readiness(
    snapshot: Snapshot | None,
    *,
    online: bool,
    now: datetime,
    sterile_left_s: float | None,
    last_ended: datetime | None,
    rest_s: float,
    rest_known: bool = True,
    replace_after_uses: int,
    calibrated: bool,
    tz: tzinfo | None = None,
) -> Readiness:
    """The verdict: yes only when every reason holds and the device is online."""
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
    # Disinfection.
    if snapshot is None:
        reasons.append(Reason("disinfected", None, "disinfection unknown"))
    elif snapshot.case == "sterilizing":
        reasons.append(
            Reason("disinfected", False, "a UV-C cycle is running", "wait for the cycle to end")
        )
    elif snapshot.sterile:
        if snapshot.sterile_until is None:
            text = "disinfected, while the roller stays in the closed case"
        elif sterile_left_s is not None:
            until = _when(snapshot.sterile_until, now, tz)
            text = f"disinfected until {until} ({_span(sterile_left_s)} left)"
        else:
            text = f"disinfected until {_when(snapshot.sterile_until, now, tz)}"
        reasons.append(Reason("disinfected", True, text))
    else:
        if snapshot.docked:
            todo = (
                "close the lid to start a cycle"
                if not snapshot.lid_closed
                else ("press Disinfect to start a cycle")
            )
        else:
            todo = "put the roller in the case and close the lid to start a cycle"
        text = "not disinfected" + (
            " (the last cycle was aborted)" if snapshot.case == "aborted" else ""
        )
        reasons.append(Reason("disinfected", False, text, todo))
    # Rest since the last session.
    if last_ended is None:
        reasons.append(Reason("rest", True, "no earlier session recorded"))
    elif not rest_known:
        reasons.append(
            Reason(
                "rest",
                None,
                "the rest since the last session cannot be checked: it was dated before the "
                "clock was synchronised",
                f"wait {_span(rest_s)} after it yourself",
            )
        )
    else:
        allowed = next_allowed_wall(last_ended.timestamp(), rest_s)
        next_at = datetime.fromtimestamp(allowed, UTC)
        rested = (now - last_ended).total_seconds()
        if now.timestamp() >= allowed:
            reasons.append(Reason("rest", True, f"rested {_span(rested)} since the last session"))
        else:
            reasons.append(
                Reason(
                    "rest",
                    False,
                    f"only {_span(rested)} since the last session (the skin needs {_span(rest_s)})",
                    f"next allowed {_when(next_at, now, tz)}",
                )
            )
    # Roller wear.
    if snapshot is None:
        reasons.append(Reason("roller", None, "roller uses unknown"))
    elif snapshot.roller_uses >= replace_after_uses:
        reasons.append(
            Reason(
                "roller",
                False,
                f"roller {snapshot.roller_id} used {snapshot.roller_uses} times "
                f"(replace after {replace_after_uses})",
                "fit a new roller, then press New roller",
            )
        )
    else:
        reasons.append(
            Reason(
                "roller",
                True,
                f"roller used {snapshot.roller_uses} of {replace_after_uses} times",
            )
        )
    # Sensor.
    if snapshot is None:
        reasons.append(Reason("sensor", None, "sensor state unknown"))
    elif snapshot.fault is not None or snapshot.force_n is None:
        fault = snapshot.fault or "no valid reading"
        reasons.append(
            Reason(
                "sensor",
                False,
                f"the force sensor is not healthy ({fault}): the pressure alarm cannot work",
                "check the load cell wiring (dermaguard check-hardware)",
            )
        )
    else:
        reasons.append(Reason("sensor", True, "force sensor healthy"))
    # Calibration.
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
    if any(r.ok is False for r in reasons):
        verdict: Verdict = "no"
        headline = "Not yet"
    elif any(r.ok is None for r in reasons):
        verdict, headline = "unknown", "Cannot tell"
    else:
        verdict, headline = "yes", "Yes, ready to roll"
    return Readiness(verdict, headline, tuple(reasons))
