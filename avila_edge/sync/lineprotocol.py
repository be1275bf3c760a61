"""Readings as InfluxDB line protocol, mapped from the twin model.

One line per reading: measurement = the asset's type (or ``reading`` when it has none), tags
``site``, ``asset``, ``point``, fields ``value`` (float, bool or string) and ``quality``
(0 good, 1 uncertain, 2 bad), timestamp = the source timestamp in nanoseconds. A Bad reading
carries only its quality, so a TSDB never stores a stale value as if it were fresh.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from avila_edge.core import Quality, Reading


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _field(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{float(value)!r}"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None


def to_line(reading: Reading, *, site: str, measurements: Mapping[str, str]) -> str:
    asset, _, point = reading.point.partition("/")
    measurement = _escape_measurement(measurements.get(asset) or "reading")
    tags = f"site={_escape_key(site)},asset={_escape_key(asset)},point={_escape_key(point)}"
    fields = [f"quality={int(reading.quality)}i"]
    if reading.quality is not Quality.BAD:
        value = _field(reading.value)
        if value is not None:
            fields.insert(0, f"value={value}")
    return f"{measurement},{tags} {','.join(fields)} {reading.ts_source}"
