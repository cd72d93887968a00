"""Time as the records keep it (ISO-8601 UTC) and as a person reads it (local, coarse spans).

One module for every layer: the store writes with :func:`iso_utc`, and everything that reads a
stamp back (the store, MQTT decoding, the views) goes through :func:`parse_utc`, so a stamp
means the same moment everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def iso_utc(wall: float) -> str:
    """Epoch seconds → ISO-8601 UTC with milliseconds and a ``Z`` (``2026-11-25T18:50:23.123Z``)."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_utc(value: object) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 string (``Z`` or offset), or ``None``.

    Naive strings are taken as UTC because the store writes UTC only.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 1 with a positive offset: before datetime.min in UTC
        return None


def utc_epoch(value: object) -> float | None:
    """Epoch seconds of an ISO-8601 stamp (see :func:`parse_utc`), or ``None``."""
    moment = parse_utc(value)
    return None if moment is None else moment.timestamp()


def to_local(moment: datetime, tz: tzinfo | None = None) -> datetime:
    """``moment`` in ``tz``, or in the machine's local zone when ``tz`` is ``None``."""
    return moment.astimezone(tz) if tz is not None else moment.astimezone()


def local_time(wall: float, tz: tzinfo | None = None) -> str:
    """A moment as a person reads it, in local time: ``Sat 5 Dec 09:02``."""
    moment = to_local(datetime.fromtimestamp(wall, UTC), tz)
    return f"{moment:%a} {moment.day} {moment:%b %H:%M}"


def format_span(seconds: float) -> str:
    """A coarse human span for waits and ages: ``45 s``, ``12 min``, ``5 h 10 min``, ``2 d 3 h``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, mins = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
