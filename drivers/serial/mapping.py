"""Which point takes which part of which frame: compiled once from the device's configuration, and the
cross-field checks the config loader reports at ``FILE:LINE``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from avila_edge.config.model import DataType, DeviceConfig, PointConfig
from avila_edge.core import Value
from drivers.serial import codec, nmea
from drivers.serial.codec import LineError
from drivers.serial.config import STOPBITS, SerialAddress, SerialConnection, unescape

_TALKER = re.compile(r"[A-Z0-9]{2}")
_SENTENCE = re.compile(r"[A-Z0-9]{1,9}")
_NUMERIC = frozenset(DataType) - {DataType.BOOL, DataType.STRING}
_FLOATS = frozenset({DataType.FLOAT32, DataType.FLOAT64})


@dataclass(frozen=True, slots=True)
class TextRoute:
    """A point of ``line``/``regex`` framing: ``pattern`` selects frames (and holds ``group``)."""

    point: PointConfig
    pattern: re.Pattern[str] | None
    group: str | int | None
    field: int | None


@dataclass(frozen=True, slots=True)
class NmeaRoute:
    """A point of ``nmea`` framing."""

    point: PointConfig
    talker: str | None
    field: int | str | None
    transducer: str | None


class Routes:
    """The compiled mapping of one device (built from a configuration ``check_device`` accepted)."""

    def __init__(self, device: DeviceConfig) -> None:
        conn: SerialConnection = device.connection
        self.text: list[TextRoute] = []
        self.nmea: dict[str, list[NmeaRoute]] = {}
        device_pattern = conn.pattern if conn.pattern is not None else conn.frame if conn.framing == "regex" else None
        shared = re.compile(device_pattern) if device_pattern is not None else None
        for p in device.points:
            a: SerialAddress = p.address
            if conn.framing == "nmea":
                assert a.sentence is not None
                route = NmeaRoute(p, a.talker, a.field, a.transducer)
                self.nmea.setdefault(a.sentence, []).append(route)
                continue
            pattern = re.compile(a.pattern) if a.pattern is not None else shared if a.group is not None else None
            field = a.field if isinstance(a.field, int) else None
            self.text.append(TextRoute(p, pattern, a.group, field))


def extract_text(route: TextRoute, text: str, delimiter: str) -> str | None:
    """The raw text ``route`` takes from a frame, or ``None`` when the frame is not for it.

    Raises ``LineError`` (``truncated``) when the frame is for it but lacks the field."""
    if route.pattern is not None:
        m = route.pattern.search(text)
        if m is None:
            return None
        if route.field is None:
            group = route.group if route.group is not None else (1 if route.pattern.groups else 0)
            value = m.group(group)
            return None if value is None else value.strip()
    assert route.field is not None
    return codec.field_of(text, delimiter, route.field)


# -- configuration checks ------------------------------------------------------------------------------


def check_device(device: DeviceConfig) -> list[tuple[str, str]]:
    """Cross-field problems of a serial device as ``(key path, message)`` pairs."""
    conn: SerialConnection = device.connection
    out: list[tuple[str, str]] = []
    out.extend(_check_connection(conn, device))
    shared: re.Pattern[str] | None = None
    source = "connection.pattern" if conn.pattern is not None else "connection.frame"
    text = conn.pattern if conn.pattern is not None else conn.frame if conn.framing == "regex" else None
    if text is not None:
        shared = _compile(text)
    for i, p in enumerate(device.points):
        where = f"points[{i}]"
        a: SerialAddress = p.address
        if conn.framing == "nmea":
            out.extend((f"{where}.{k}", m) for k, m in _check_nmea_point(p, a))
        else:
            out.extend((f"{where}.{k}", m) for k, m in _check_text_point(p, a, shared, source, text is not None))
        out.extend((f"{where}.{k}", m) for k, m in _check_write(p, a, conn))
    return out


def _check_connection(conn: SerialConnection, device: DeviceConfig) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not conn.port:
        out.append(("connection.port", "name the serial device, e.g. /dev/ttyUSB0"))
    if conn.stopbits not in STOPBITS:
        out.append(("connection.stopbits", f"{conn.stopbits:g} is not a number of stop bits; use one of 1, 1.5, 2"))
    for key, value in (("terminator", conn.terminator), ("poll", conn.poll), ("delimiter", conn.delimiter)):
        if value is None:
            continue
        if not value:
            out.append((f"connection.{key}", "cannot be empty"))
            continue
        try:
            unescape(value).encode(conn.encoding)
        except UnicodeEncodeError:
            out.append((f"connection.{key}", f"{value!r} cannot be written in {conn.encoding}"))
    if conn.max_line < 1:
        out.append(("connection.max_line", "must be at least 1 byte"))
    if conn.max_buffer < 1:
        out.append(("connection.max_buffer", "must be at least 1 byte"))
    if conn.idle_timeout <= 0:
        out.append(("connection.idle_timeout", "must be longer than 0 s"))
    elif conn.poll is not None and conn.idle_timeout <= device.timing.poll_interval:
        out.append(
            (
                "connection.idle_timeout",
                f"{conn.idle_timeout:g} s is not longer than timing.poll_interval "
                f"{device.timing.poll_interval:g} s: every point would time out between two polls",
            )
        )
    if conn.framing == "regex":
        if conn.frame is None:
            out.append(("connection.frame", "regex framing needs the frame regular expression"))
        else:
            problem = _regex_problem(conn.frame)
            if problem is None and re.compile(conn.frame.encode("utf-8")).fullmatch(b"") is not None:
                problem = "matches an empty frame; it must consume at least one byte"
            if problem is not None:
                out.append(("connection.frame", problem))
    elif conn.frame is not None:
        out.append(("connection.frame", f"frame is for framing: regex (this device uses framing: {conn.framing})"))
    if conn.pattern is not None:
        problem = _regex_problem(conn.pattern)
        if problem is not None:
            out.append(("connection.pattern", problem))
        elif conn.framing == "nmea":
            out.append(("connection.pattern", "pattern is for line and regex framing, not nmea"))
    if conn.framing == "nmea" and conn.encoding != "ascii":
        out.append(("connection.encoding", "NMEA 0183 is ASCII; leave encoding out or set ascii"))
    return out


def _check_text_point(
    p: PointConfig, a: SerialAddress, shared: re.Pattern[str] | None, source: str, has_shared: bool
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in ("sentence", "talker", "transducer"):
        if getattr(a, key) is not None:
            out.append((f"address.{key}", f"{key} is for framing: nmea"))
    if isinstance(a.field, str):
        out.append(("address.field", "with line or regex framing a field is an index (0 = the first piece)"))
    own = None
    if a.pattern is not None:
        problem = _regex_problem(a.pattern)
        if problem is not None:
            out.append(("address.pattern", problem))
        else:
            own = re.compile(a.pattern)
    if a.group is not None and a.field is not None:
        out.append(("address.group", "give either group or field, not both"))
    elif a.group is not None:
        regex = own or shared
        if regex is None and (a.pattern is not None or has_shared):
            pass  # the broken regex is reported where it is written
        elif regex is None:
            out.append(("address.group", "a group needs a pattern (here or in the connection) or a regex frame"))
        else:
            out.extend(_group_problem(a.group, regex, "address.pattern" if own else source))
    elif a.field is None and a.pattern is None:
        out.append(("address", "say where the value is: group (a named regex group) or field (an index)"))
    return out


def _group_problem(group: str | int, regex: re.Pattern[str], source: str) -> list[tuple[str, str]]:
    if isinstance(group, int):
        if not 0 <= group <= regex.groups:
            return [("address.group", f"{source} has {regex.groups} group(s); {group} is none of them")]
        return []
    if group not in regex.groupindex:
        names = ", ".join(regex.groupindex) or "none"
        return [("address.group", f"{source} has no group named {group!r} (named groups: {names})")]
    return []


def _check_nmea_point(p: PointConfig, a: SerialAddress) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in ("pattern", "group"):
        if getattr(a, key) is not None:
            out.append((f"address.{key}", f"{key} is for line and regex framing; NMEA points name sentence and field"))
    if a.sentence is None:
        return [*out, ("address.sentence", "name the sentence type, e.g. GGA, RMC, MTW, XDR")]
    if not _SENTENCE.fullmatch(a.sentence):
        out.append(("address.sentence", f"{a.sentence!r} is not a sentence type (upper case, without talker: GGA)"))
        return out
    if a.talker is not None and not _TALKER.fullmatch(a.talker):
        out.append(("address.talker", f"{a.talker!r} is not a talker id (two upper-case characters: GP, GN, II)"))
    if a.sentence == "XDR":
        if a.transducer is None:
            out.append(("address.transducer", "an XDR point names its transducer, e.g. transducer: AIRTEMP"))
        if a.field is not None:
            out.append(("address.field", "an XDR point is chosen by transducer, not by field"))
        elif p.type not in _NUMERIC and p.type is not DataType.STRING:
            out.append(("type", f"an XDR measurement is a number, not {p.type.value}"))
        return out
    if a.transducer is not None:
        out.append(("address.transducer", "transducer is for XDR sentences"))
    if a.field is None:
        return [*out, ("address.field", "name the field: an index (1 = first after the address) or a name")]
    if isinstance(a.field, int):
        if a.field < 1:
            out.append(("address.field", "NMEA fields count from 1 (the first field after the address)"))
        return out
    table = nmea.FIELDS.get(a.sentence)
    if table is None:
        known = ", ".join(sorted(nmea.FIELDS))
        out.append(("address.field", f"{a.sentence} has no named fields; use an index (named: {known}, XDR)"))
        return out
    named = table.get(a.field)
    if named is None:
        out.append(("address.field", f"{a.sentence} has no field {a.field!r}; use one of {', '.join(table)}"))
        return out
    out.extend(_type_problem(p, named.kind, f"{a.sentence} {a.field}"))
    return out


def _type_problem(p: PointConfig, kind: type, what: str) -> list[tuple[str, str]]:
    if p.type is DataType.STRING:
        return []
    if kind is float and p.type not in _FLOATS:
        return [("type", f"{what} is a number with decimals; use float32 or float64")]
    if kind is int and p.type not in _NUMERIC:
        return [("type", f"{what} is a whole number; use an integer or float type")]
    if kind is bool and p.type is not DataType.BOOL:
        return [("type", f"{what} is true/false; use type bool")]
    if kind is str:
        return [("type", f"{what} is text; use type string")]
    return []


def _check_write(p: PointConfig, a: SerialAddress, conn: SerialConnection) -> list[tuple[str, str]]:
    if a.command is None:
        return (
            [("writable", 'a writable point needs address.command (e.g. "SET {value:.1f}\\r\\n")')]
            if p.writable
            else []
        )
    if not p.writable:
        return [("writable", "the point has a command; set writable: true to allow writes")]
    sample: Value = codec.sample_value(p.type)
    try:
        codec.render_command(a.command, sample, conn.encoding)
    except LineError as exc:
        return [("address.command", str(exc))]
    return []


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    return None


def _compile(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


__all__ = ["NmeaRoute", "Routes", "TextRoute", "check_device", "extract_text"]
