"""Reading and atomically writing the calibration file.

A power cut while writing must never leave half a calibration: we write a temporary file in the
same directory, fsync it, rename it over the old one and fsync the directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dermaguard.core.calibration import Calibration, CalibrationPoint, stored_scale_problem

FORMAT_VERSION = 1


class CalibrationFileError(Exception):
    """The calibration file is missing or unreadable; the message says what to do."""


def to_dict(cal: Calibration) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "offset": cal.offset,
        "scale_n_per_count": cal.scale_n_per_count,
        "gain": cal.gain,
        "created": cal.created,
        "points": [{"raw": p.raw, "force_n": p.force_n} for p in cal.points],
    }


def from_dict(data: Any, source: str) -> Calibration:
    """The calibration a file holds; one whose scale cannot be right (zero with a reference
    weight, negative, not a number) is refused, so no force is ever read through it."""
    try:
        if data.get("version") != FORMAT_VERSION:
            raise CalibrationFileError(
                f"{source}: unsupported calibration format {data.get('version')!r} "
                f"(this version reads {FORMAT_VERSION})"
            )
        cal = Calibration(
            offset=float(data["offset"]),
            scale_n_per_count=float(data["scale_n_per_count"]),
            gain=int(data.get("gain", 128)),
            created=str(data.get("created", "")),
            points=tuple(
                CalibrationPoint(float(p["raw"]), float(p["force_n"]))
                for p in data.get("points", [])
            ),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CalibrationFileError(f"{source}: not a valid calibration file ({exc})") from exc
    problem = stored_scale_problem(cal)
    if problem is not None:
        raise CalibrationFileError(f"{source}: {problem}")
    return cal


def load_calibration(path: Path) -> Calibration:
    """Read a calibration; a missing file says how to make one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationFileError(
            f"no calibration at {path}: run `dermaguard calibrate` first"
        ) from None
    except OSError as exc:
        raise CalibrationFileError(f"cannot read calibration {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CalibrationFileError(f"{path}: not valid JSON ({exc})") from exc
    return from_dict(data, str(path))


def save_calibration(path: Path, cal: Calibration) -> None:
    """Write ``cal`` to ``path`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(to_dict(cal), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def backup_path(path: Path) -> Path:
    """Where the calibration a change replaced is kept, so ``calibrate --undo`` can restore it."""
    return path.with_name(path.name + ".prev")


def _load_or_none(path: Path) -> Calibration | None:
    try:
        return load_calibration(path)
    except CalibrationFileError:
        return None


def in_effect(path: Path) -> Calibration | None:
    """The last usable (complete) calibration: the file's, else the one kept before it.

    After a bare tare the file holds no scale yet; the calibration it is about to replace is
    then the kept one, and a change is measured against that.
    """
    for candidate in (path, backup_path(path)):
        cal = _load_or_none(candidate)
        if cal is not None and cal.is_complete:
            return cal
    return None


def save_keeping_previous(path: Path, cal: Calibration) -> None:
    """Write ``cal``, first keeping the usable calibration it replaces in :func:`backup_path`.

    A tare-only file is not kept (it has no scale to go back to), so the tare that starts a new
    calibration does not push the last usable one out of the backup.
    """
    current = _load_or_none(path)
    if current is not None and current.is_complete:
        save_calibration(backup_path(path), current)
    save_calibration(path, cal)


def restore_previous(path: Path) -> tuple[Calibration, Calibration | None]:
    """Swap the calibration with the kept one; returns (restored, replaced).

    The replaced calibration becomes the kept one, so a second undo goes back again.
    """
    previous = backup_path(path)
    try:
        restored = load_calibration(previous)
    except CalibrationFileError as exc:
        if not previous.exists():
            raise CalibrationFileError(
                f"no previous calibration to restore ({previous} does not exist)"
            ) from None
        raise CalibrationFileError(f"cannot restore the previous calibration: {exc}") from exc
    replaced = _load_or_none(path)
    if replaced is not None:
        save_calibration(previous, replaced)
    save_calibration(path, restored)
    return restored, replaced
