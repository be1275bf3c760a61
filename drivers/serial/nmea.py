"""NMEA 0183 sentences: parsing with checksum verification, and the named fields of common sentences.

A sentence is ``$TTSSS,f1,f2,...*HH``: ``TT`` the talker (``GP``, ``GN``, ``II`` ...), ``SSS`` the
sentence type, ``HH`` the XOR of every byte between ``$`` and ``*`` in hex. Proprietary sentences
(``$PGRME,...``) have the talker ``P`` and the rest of the address as their type. ``!`` starts
encapsulated sentences (AIS) the same way.

``scan`` takes one received line and never raises: it returns the sentence it holds (if any) and a
``NmeaError`` for each problem (``garbage`` before it, a ``truncated`` sentence cut by the next one,
a ``bad_checksum`` ...). ``parse_sentence`` raises ``NmeaError`` and nothing else. Values of named
fields come typed (``float``, ``int``, ``str``, ``bool``); ``None`` means the field is empty (no
fix, no data) and ``ABSENT`` that the sentence does not carry it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from avila_edge.core import Value
from drivers.serial import codec
from drivers.serial.codec import LineError


class NmeaError(LineError):
    """A line that is no valid sentence, or a field that holds no valid value."""


def parse_number(text: str) -> float:
    try:
        return codec.parse_number(text)
    except LineError as exc:
        raise NmeaError(exc.kind, str(exc)) from None


def parse_integer(text: str) -> int:
    try:
        return codec.parse_integer(text)
    except LineError as exc:
        raise NmeaError(exc.kind, str(exc)) from None


class Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = Absent()
"""The sentence does not carry the asked field (an older version, another XDR transducer)."""

Lookup = Value | None | Absent

_ADDRESS: Final = re.compile(r"[A-Z0-9]{2,10}")
_STARTS: Final = b"$!"
KNOTS_TO_MPS: Final = 1852.0 / 3600.0


@dataclass(frozen=True, slots=True)
class Sentence:
    """One verified sentence. ``fields[0]`` is the address (``GPGGA``); ``fields[1]`` the first field."""

    talker: str
    type: str
    fields: tuple[str, ...]

    def text(self, index: int) -> str | Absent:
        return self.fields[index] if 0 <= index < len(self.fields) else ABSENT


def checksum(body: bytes) -> int:
    """The XOR of ``body`` (the bytes between ``$`` and ``*``)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def with_checksum(body: str) -> str:
    """``$`` + ``body`` + ``*HH`` (no line end)."""
    return f"${body}*{checksum(body.encode('ascii')):02X}"


def parse_sentence(data: bytes, *, require_checksum: bool = True) -> Sentence:
    """The sentence in ``data`` (from ``$``/``!`` to the checksum; line-end whitespace ignored)."""
    data = data.strip(b" \t\r\n")
    if not data or data[0] not in _STARTS:
        raise NmeaError("garbage", "no sentence: it does not start with '$' or '!'")
    star = data.find(b"*")
    if star < 0:
        if require_checksum:
            raise NmeaError("truncated", "the sentence ends without its checksum '*HH'")
        body = data[1:]
    else:
        body = data[1:star]
        tail = data[star + 1 :]
        if len(tail) < 2:
            raise NmeaError("truncated", "the sentence is cut inside its checksum")
        if len(tail) > 2 or not all(b in b"0123456789ABCDEFabcdef" for b in tail):
            raise NmeaError("bad_checksum", f"checksum field {tail[:8]!r} is not two hex digits")
        given, actual = int(tail, 16), checksum(body)
        if given != actual:
            raise NmeaError("bad_checksum", f"checksum *{given:02X} but the sentence sums to {actual:02X}")
    if any(b < 0x20 or b > 0x7E for b in body):
        raise NmeaError("invalid_encoding", "the sentence holds bytes that are not printable ASCII")
    if any(b in _STARTS or b == 0x2A for b in body):
        raise NmeaError("truncated", "the sentence holds a reserved character ('$', '!' or '*')")
    fields = tuple(body.decode("ascii").split(","))
    address = fields[0]
    if not _ADDRESS.fullmatch(address) or (address[0] != "P" and len(address) != 5):
        raise NmeaError("garbage", f"{address[:12]!r} is not a sentence address (talker + type, e.g. GPGGA)")
    if address[0] == "P":
        return Sentence("P", address[1:], fields)
    return Sentence(address[:2], address[2:], fields)


def scan(line: bytes, *, require_checksum: bool = True) -> tuple[Sentence | None, list[NmeaError]]:
    """The sentence that ends ``line`` (if valid) and every problem found in the line; never raises."""
    line = line.strip(b" \t\r\n")
    if not line:
        return None, []
    start = max(line.rfind(b"$"), line.rfind(b"!"))
    if start < 0:
        return None, [NmeaError("garbage", f"{len(line)} byte(s) with no sentence start")]
    problems: list[NmeaError] = []
    if start > 0:
        head = line[:start]
        if b"$" in head or b"!" in head:
            problems.append(NmeaError("truncated", "a sentence was cut short by the start of the next one"))
        elif head.strip():
            problems.append(NmeaError("garbage", f"{len(head)} byte(s) before the sentence"))
    try:
        sentence = parse_sentence(line[start:], require_checksum=require_checksum)
    except NmeaError as exc:
        problems.append(exc)
        return None, problems
    return sentence, problems


# -- field values ------------------------------------------------------------------------------------


def _number(s: Sentence, i: int) -> Lookup:
    text = s.text(i)
    if isinstance(text, Absent) or not text:
        return None if text == "" else ABSENT
    return parse_number(text)


def _integer(s: Sentence, i: int) -> Lookup:
    text = s.text(i)
    if isinstance(text, Absent) or not text:
        return None if text == "" else ABSENT
    return parse_integer(text)


def _word(s: Sentence, i: int) -> Lookup:
    text = s.text(i)
    if isinstance(text, Absent) or not text:
        return None if text == "" else ABSENT
    return text


def _flag(s: Sentence, i: int) -> Lookup:
    text = s.text(i)
    if isinstance(text, Absent) or not text:
        return None if text == "" else ABSENT
    if text not in ("A", "V"):
        raise NmeaError("invalid_value", f"{s.type} status {text[:8]!r} is neither A (valid) nor V (warning)")
    return text == "A"


def _coordinate(s: Sentence, i: int, hemispheres: str, limit: int) -> Lookup:
    """``ddmm.mmmm`` (latitude) or ``dddmm.mmmm`` (longitude) and its hemisphere, in decimal degrees."""
    text, hemi = s.text(i), s.text(i + 1)
    if isinstance(text, Absent) or isinstance(hemi, Absent):
        return ABSENT
    if not text and not hemi:
        return None
    if len(hemi) != 1 or hemi not in hemispheres:
        raise NmeaError("invalid_value", f"{s.type} hemisphere {hemi[:8]!r} is not one of {', '.join(hemispheres)}")
    whole, _, _ = text.partition(".")
    if len(whole) < 3 or not whole.isdigit():
        raise NmeaError("invalid_value", f"{s.type} coordinate {text[:16]!r} is not [d]ddmm.mmmm")
    degrees = int(whole[:-2])
    minutes = parse_number(text[len(whole) - 2 :])
    if minutes >= 60.0 or degrees + minutes / 60.0 > limit:
        raise NmeaError("invalid_value", f"{s.type} coordinate {text[:16]!r} is out of range")
    value = degrees + minutes / 60.0
    return -value if hemi in "SW" else value


def _time(s: Sentence, i: int) -> Lookup:
    """``hhmmss[.ss]`` as seconds since midnight UTC."""
    text = s.text(i)
    if isinstance(text, Absent) or not text:
        return None if text == "" else ABSENT
    hms, _, frac = text.partition(".")
    if len(hms) != 6 or not hms.isdigit() or (frac and not frac.isdigit()):
        raise NmeaError("invalid_value", f"{s.type} time {text[:16]!r} is not hhmmss.ss")
    h, m, sec = int(hms[:2]), int(hms[2:4]), int(hms[4:])
    if h > 23 or m > 59 or sec > 60:
        raise NmeaError("invalid_value", f"{s.type} time {text[:16]!r} is out of range")
    return h * 3600.0 + m * 60.0 + sec + (float("0." + frac) if frac else 0.0)


def _datetime(s: Sentence, date_i: int, time_i: int) -> Lookup:
    """RMC ``ddmmyy`` + ``hhmmss.ss`` as ISO 8601 UTC text (two-digit years 80-99 are 19xx)."""
    date, clock = s.text(date_i), _time(s, time_i)
    if isinstance(date, Absent) or isinstance(clock, Absent):
        return ABSENT
    if not date or clock is None:
        return None
    if len(date) != 6 or not date.isdigit():
        raise NmeaError("invalid_value", f"{s.type} date {date[:16]!r} is not ddmmyy")
    day, month, yy = int(date[:2]), int(date[2:4]), int(date[4:])
    if not (1 <= day <= 31 and 1 <= month <= 12):
        raise NmeaError("invalid_value", f"{s.type} date {date[:16]!r} is out of range")
    assert isinstance(clock, float)
    year = 1900 + yy if yy >= 80 else 2000 + yy
    seconds = clock % 60.0
    minutes = int(clock // 60) % 60
    hours = int(clock // 3600)
    return f"{year:04d}-{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:06.3f}Z"


def _with_unit(s: Sentence, i: int, unit_i: int, units: dict[str, float]) -> Lookup:
    """Field ``i`` converted by the factor its unit letter (field ``unit_i``) names."""
    value = _number(s, i)
    if not isinstance(value, float):
        return value
    unit = s.text(unit_i)
    if isinstance(unit, Absent):
        return ABSENT
    factor = units.get(unit)
    if factor is None:
        raise NmeaError("invalid_value", f"{s.type} unit {unit[:8]!r} is not one of {', '.join(units)}")
    return value * factor


def _signed(s: Sentence, i: int, negative: str) -> Lookup:
    value = _number(s, i)
    if not isinstance(value, float):
        return value
    side = s.text(i + 1)
    return -value if side == negative else value


def transducer(s: Sentence, name: str) -> Lookup:
    """The measurement of the XDR transducer called ``name`` (quadruplets type, value, unit, name)."""
    for q in range(1, len(s.fields) - 3, 4):
        if s.fields[q + 3] == name:
            return _number(s, q + 1)
    return ABSENT


@dataclass(frozen=True, slots=True)
class NamedField:
    """A field of the built-in table: its value type and how to read it."""

    kind: type
    read: Callable[[Sentence], Lookup]
    index: int
    meaning: str


def _f(kind: type, index: int, read: Callable[[Sentence], Lookup], meaning: str) -> NamedField:
    return NamedField(kind, read, index, meaning)


_LAT = "NS"
_LON = "EW"
_MWV_UNITS: Final = {"K": 1 / 3.6, "M": 1.0, "N": KNOTS_TO_MPS, "S": 0.44704}

FIELDS: Final[dict[str, dict[str, NamedField]]] = {
    "GGA": {
        "time": _f(float, 1, lambda s: _time(s, 1), "UTC time of the fix, seconds since midnight"),
        "latitude": _f(float, 2, lambda s: _coordinate(s, 2, _LAT, 90), "decimal degrees, south negative"),
        "longitude": _f(float, 4, lambda s: _coordinate(s, 4, _LON, 180), "decimal degrees, west negative"),
        "fix_quality": _f(int, 6, lambda s: _integer(s, 6), "0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float ..."),
        "satellites": _f(int, 7, lambda s: _integer(s, 7), "satellites in use"),
        "hdop": _f(float, 8, lambda s: _number(s, 8), "horizontal dilution of precision"),
        "altitude": _f(float, 9, lambda s: _number(s, 9), "antenna altitude above mean sea level, m"),
        "geoid_separation": _f(float, 11, lambda s: _number(s, 11), "geoid above the WGS84 ellipsoid, m"),
    },
    "RMC": {
        "time": _f(float, 1, lambda s: _time(s, 1), "UTC time, seconds since midnight"),
        "valid": _f(bool, 2, lambda s: _flag(s, 2), "status A (true) or V, receiver warning (false)"),
        "latitude": _f(float, 3, lambda s: _coordinate(s, 3, _LAT, 90), "decimal degrees, south negative"),
        "longitude": _f(float, 5, lambda s: _coordinate(s, 5, _LON, 180), "decimal degrees, west negative"),
        "speed_knots": _f(float, 7, lambda s: _number(s, 7), "speed over ground, knots"),
        "speed_mps": _f(float, 7, lambda s: _scaled(s, 7, KNOTS_TO_MPS), "speed over ground, m/s"),
        "course": _f(float, 8, lambda s: _number(s, 8), "course over ground, degrees true"),
        "datetime": _f(str, 9, lambda s: _datetime(s, 9, 1), "UTC date and time, ISO 8601 text"),
        "magnetic_variation": _f(float, 10, lambda s: _signed(s, 10, "W"), "degrees, west negative"),
    },
    "GLL": {
        "latitude": _f(float, 1, lambda s: _coordinate(s, 1, _LAT, 90), "decimal degrees, south negative"),
        "longitude": _f(float, 3, lambda s: _coordinate(s, 3, _LON, 180), "decimal degrees, west negative"),
        "time": _f(float, 5, lambda s: _time(s, 5), "UTC time, seconds since midnight"),
        "valid": _f(bool, 6, lambda s: _flag(s, 6), "status A (true) or V (false)"),
    },
    "VTG": {
        "course_true": _f(float, 1, lambda s: _number(s, 1), "course over ground, degrees true"),
        "course_magnetic": _f(float, 3, lambda s: _number(s, 3), "course over ground, degrees magnetic"),
        "speed_knots": _f(float, 5, lambda s: _number(s, 5), "speed over ground, knots"),
        "speed_kmh": _f(float, 7, lambda s: _number(s, 7), "speed over ground, km/h"),
        "speed_mps": _f(float, 5, lambda s: _scaled(s, 5, KNOTS_TO_MPS), "speed over ground, m/s"),
    },
    "MTW": {
        "temperature": _f(float, 1, lambda s: _with_unit(s, 1, 2, {"C": 1.0}), "water temperature, degC"),
    },
    "MWV": {
        "angle": _f(float, 1, lambda s: _number(s, 1), "wind angle, degrees"),
        "reference": _f(str, 2, lambda s: _word(s, 2), "R relative or T true"),
        "speed": _f(float, 3, lambda s: _number(s, 3), "wind speed in the sentence's unit"),
        "speed_unit": _f(str, 4, lambda s: _word(s, 4), "K km/h, M m/s, N knots, S mph"),
        "speed_mps": _f(float, 3, lambda s: _with_unit(s, 3, 4, _MWV_UNITS), "wind speed, m/s"),
        "valid": _f(bool, 5, lambda s: _flag(s, 5), "status A (true) or V (false)"),
    },
    "HDT": {"heading": _f(float, 1, lambda s: _number(s, 1), "heading, degrees true")},
    "DPT": {
        "depth": _f(float, 1, lambda s: _number(s, 1), "water depth below the transducer, m"),
        "offset": _f(float, 2, lambda s: _number(s, 2), "transducer offset, m"),
    },
}
"""Named fields by sentence type. XDR values are reached by transducer name instead."""

STATUS_FIELD: Final = {"RMC": 2, "GLL": 6, "MWV": 5}
"""Sentences with a status field: V (warning) makes their other values Uncertain."""


def _scaled(s: Sentence, i: int, factor: float) -> Lookup:
    value = _number(s, i)
    return value * factor if isinstance(value, float) else value


def lookup(s: Sentence, field: int | str | None, xdr_name: str | None = None) -> Lookup:
    """The value of ``field`` (index or name) or of XDR transducer ``xdr_name`` in ``s``.

    Indexed fields come as text; named fields typed. Raises ``NmeaError`` (``invalid_value``)."""
    if xdr_name is not None:
        return transducer(s, xdr_name)
    if isinstance(field, int):
        text = s.text(field)
        return None if text == "" else text
    named = FIELDS.get(s.type, {}).get(field or "")
    if named is None:
        return ABSENT
    return named.read(s)


def warning(s: Sentence, field: int | str | None) -> str:
    """Why the values of ``s`` are only Uncertain (its status says V), or ``""``."""
    index = STATUS_FIELD.get(s.type)
    if index is None or field in (index, "valid"):
        return ""
    if s.text(index) == "V":
        return f"{s.type} status V: the sender flags its data as not valid"
    return ""


__all__ = [
    "ABSENT",
    "FIELDS",
    "Absent",
    "NamedField",
    "NmeaError",
    "Sentence",
    "checksum",
    "lookup",
    "parse_sentence",
    "scan",
    "transducer",
    "warning",
    "with_checksum",
]
