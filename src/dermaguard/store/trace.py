"""The compact trace format: one BLOB per chunk of downsampled force samples.

A chunk of ``n`` samples is three little-endian columns, one after the other:
``n`` uint32 milliseconds since the session started, ``n`` float32 force in newtons (NaN when
unknown) and ``n`` uint8 zone codes (255 when unknown). Nine bytes a sample: an hour at 10 Hz
is about 320 kB, and a chunk of 20 s (1.8 kB) is stored inline in one table page.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Sequence

from dermaguard.core.events import ZONES, Zone

TraceSample = tuple[float, float | None, Zone | None]
"""(seconds since the session started, force in newtons or ``None``, zone or ``None``)."""

UNKNOWN_ZONE = 255
_ZONE_CODES: dict[Zone, int] = {zone: code for code, zone in enumerate(ZONES)}
_MAX_MS = 2**32 - 1
_SAMPLE_BYTES = 9

if array("I").itemsize != 4 or array("f").itemsize != 4:  # pragma: no cover - exotic C ABI
    raise ImportError("the trace format needs 4-byte C unsigned int and float")


def zone_code(zone: Zone | None) -> int:
    return UNKNOWN_ZONE if zone is None else _ZONE_CODES.get(zone, UNKNOWN_ZONE)


def zone_name(code: int) -> Zone | None:
    return ZONES[code] if code < len(ZONES) else None


def _little(arr: array[int] | array[float]) -> bytes:
    if sys.byteorder == "big":
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def pack(samples: Sequence[TraceSample]) -> bytes:
    """Pack samples (``t`` already relative to the session start) into a chunk BLOB."""
    times = array("I", (min(_MAX_MS, max(0, round(t * 1000.0))) for t, _, _ in samples))
    forces = array("f", (math.nan if f is None else f for _, f, _ in samples))
    zones = array("B", (zone_code(z) for _, _, z in samples))
    return _little(times) + _little(forces) + zones.tobytes()


def unpack(blob: bytes, n: int) -> list[TraceSample]:
    """The samples of one chunk; raises ``ValueError`` if the BLOB does not hold ``n``."""
    if len(blob) != n * _SAMPLE_BYTES:
        raise ValueError(f"trace chunk of {len(blob)} bytes cannot hold {n} samples")
    times, forces = array("I"), array("f")
    times.frombytes(blob[: 4 * n])
    forces.frombytes(blob[4 * n : 8 * n])
    if sys.byteorder == "big":
        times.byteswap()
        forces.byteswap()
    zones = blob[8 * n :]
    return [
        (ms / 1000.0, None if math.isnan(f) else f, zone_name(z))
        for ms, f, z in zip(times, forces, zones, strict=True)
    ]


def unpack_all(chunks: Iterable[tuple[bytes, int]]) -> list[TraceSample]:
    out: list[TraceSample] = []
    for blob, n in chunks:
        out.extend(unpack(blob, n))
    return out
