"""Durations and sizes as people write them (``250ms``, ``5m``, ``64KiB``) → float seconds and int bytes."""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_BYTES = {
    None: 1, "B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip

DURATION_HELP = "write seconds or e.g. 250ms, 2s, 5m, 1h, 7d"
SIZE_HELP = "write bytes or e.g. 64KiB, 16MB, 1GiB"


def show(value: Any) -> str:
    """A value as the user wrote it in YAML, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def parse_duration(value: Any) -> float:
    """Seconds from a number or ``<number><ms|s|m|h|d>``; ``ValueError`` in plain words otherwise."""
    if isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _SECONDS[m.group(2)]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{show(value)} is not a duration; {DURATION_HELP}")
    if not math.isfinite(seconds):
        raise ValueError(f"{show(value)} is not a duration; {DURATION_HELP}")
    if seconds < 0:
        raise ValueError(f"{show(value)} is negative; a duration is 0 or more")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from a whole number or ``<number><B|KB|MB|GB|TB|KiB|MiB|GiB|TiB>``."""
    size: float
    if isinstance(value, str) and (m := _SIZE.match(value)):
        size = float(m.group(1)) * _BYTES[m.group(2)]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{show(value)} is not a whole number of bytes; {SIZE_HELP}")
        size = value
    else:
        raise ValueError(f"{show(value)} is not a size; {SIZE_HELP}")
    if not math.isfinite(size):
        raise ValueError(f"{show(value)} is not a size; {SIZE_HELP}")
    if size < 0:
        raise ValueError(f"{show(value)} is negative; a size is 0 or more")
    return int(size)
