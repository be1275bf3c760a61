"""Names and codes the northbound endpoints share: node ids, topics, quality as OPC UA status, unit codes.

Pure functions without protocol libraries, so the MQTT publisher does not load asyncua.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from avila_edge.core import Quality

NAMESPACE_PREFIX: Final = "urn:avila-edge:site:"

# OPC UA status codes (Part 4, 7.34) the quality of a value is shown as.
GOOD: Final = 0x00000000
UNCERTAIN: Final = 0x40000000
UNCERTAIN_LAST_USABLE_VALUE: Final = 0x40900000
UNCERTAIN_SENSOR_NOT_ACCURATE: Final = 0x40930000
BAD: Final = 0x80000000
BAD_NO_COMMUNICATION: Final = 0x80310000
BAD_TIMEOUT: Final = 0x800A0000
BAD_SENSOR_FAILURE: Final = 0x808C0000
BAD_OUT_OF_RANGE: Final = 0x803C0000
BAD_CONFIGURATION_ERROR: Final = 0x80890000
BAD_WAITING_FOR_INITIAL_DATA: Final = 0x80320000

_BAD_WORDS: Final = (
    (("timeout", "timed out", "no response"), BAD_TIMEOUT),
    (("connect", "link", "unreachable", "refused", "offline", "disconnected", "down"), BAD_NO_COMMUNICATION),
    (("sensor",), BAD_SENSOR_FAILURE),
    (("range",), BAD_OUT_OF_RANGE),
    (("config",), BAD_CONFIGURATION_ERROR),
    (("no value yet",), BAD_WAITING_FOR_INITIAL_DATA),
)

UNECE_UNITS_URI: Final = "http://www.opcfoundation.org/UA/units/un/cefact"
UNECE_CODES: Final[dict[str, str]] = {
    "°C": "CEL", "degC": "CEL", "K": "KEL", "°F": "FAH",
    "bar": "BAR", "mbar": "MBR", "Pa": "PAL", "kPa": "KPA", "MPa": "MPA", "psi": "PS",
    "m³/h": "MQH", "m3/h": "MQH", "l/s": "G51", "l/min": "L2", "m/s": "MTS", "mm/s": "C16",
    "A": "AMP", "mA": "4K", "V": "VLT", "W": "WTT", "kW": "KWT", "Wh": "WHR", "kWh": "KWH", "Hz": "HTZ",
    "rpm": "RPM", "h": "HUR", "s": "SEC", "min": "MIN", "%": "P1", "m": "MTR", "mm": "MMT", "kg": "KGM",
}  # fmt: skip


def namespace_uri(site: str) -> str:
    return NAMESPACE_PREFIX + site


def site_node(site: str) -> str:
    """String identifier of the site folder (``:`` never occurs in asset ids, so no clash)."""
    return f"site:{site}"


def alarm_node(asset: str, alarm: str) -> str:
    return f"{asset}/alarms/{alarm}"


def status_code(quality: Quality, reason: str, names: Mapping[str, int] | None = None) -> int:
    """The OPC UA status code for a value of this quality; the reason picks a sub-code when it says
    what happened. A reason that starts with an OPC UA status name (as the OPC UA driver reports them,
    looked up in ``names``) keeps that code when its severity matches."""
    if quality is Quality.GOOD:
        return GOOD
    word = reason.split(":", 1)[0].strip().split(" ", 1)[0]
    named = names.get(word) if names is not None and word else None
    if named is not None and (named & 0xC0000000) == (BAD if quality is Quality.BAD else UNCERTAIN):
        return named
    text = reason.lower()
    if quality is Quality.UNCERTAIN:
        if "last" in text or "stale" in text:
            return UNCERTAIN_LAST_USABLE_VALUE
        if "sensor" in text or "accura" in text:
            return UNCERTAIN_SENSOR_NOT_ACCURATE
        return UNCERTAIN
    for words, code in _BAD_WORDS:
        if any(w in text for w in words):
            return code
    return BAD


def unece_unit_id(unit: str) -> int:
    """The OPC UA UnitId of ``unit`` (its UNECE common code packed into an integer), -1 when unknown."""
    code = UNECE_CODES.get(unit)
    if code is None:
        return -1
    value = 0
    for ch in code:
        value = value << 8 | ord(ch)
    return value


def topic_prefix(prefix: str, site: str) -> str:
    return f"{prefix}/{site}"
