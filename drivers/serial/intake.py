"""From received bytes to Readings: framing, NMEA or text decoding, point mapping, fault counting and
the idle timeout. No I/O: the driver feeds it chunks and the time.

Frame-level faults (``garbage``, ``oversize``, ``truncated``, ``bad_checksum``, ``invalid_encoding``)
are counted in the device's health, logged with a line excerpt, and touch no point: what arrived
around them is used as usual. A well-formed frame whose value cannot be read (``invalid_value``:
non-numeric, out of range) makes that point Bad with the reason. A point that receives nothing for
``idle_timeout`` goes Bad with a reason starting with ``timeout``.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from avila_edge.config.model import DeviceConfig, PointConfig
from avila_edge.core import Quality, Reading, Value, bad
from avila_edge.driver import DriverHealth
from avila_edge.driver.scaling import to_engineering
from drivers.serial import codec, nmea
from drivers.serial.codec import LineError
from drivers.serial.config import SerialConnection, unescape
from drivers.serial.framing import Discarded, LineFramer, RegexFramer
from drivers.serial.mapping import Routes, extract_text

logger = logging.getLogger(__name__)

LOG_FIRST: Final = 20
LOG_EVERY: Final = 1000


class Intake:
    """The receiving side of one serial device."""

    def __init__(self, device: DeviceConfig, health: DriverHealth) -> None:
        self.device = device
        self.conn: SerialConnection = device.connection
        self.health = health
        self.routes = Routes(device)
        self._encoding = self.conn.encoding
        self._delimiter = unescape(self.conn.delimiter)
        self._require_checksum = self.conn.checksum == "required"
        self.framer = self._framer()
        self._last_value: dict[str, Value] = {}
        self._bad_reason: dict[str, str] = {}
        self._updated: dict[str, float] = {}
        self._logged: dict[str, int] = {}

    def _framer(self) -> LineFramer | RegexFramer:
        c = self.conn
        if c.framing == "nmea":
            return LineFramer(b"\n", int(c.max_line), strip_cr=True)
        if c.framing == "regex":
            assert c.frame is not None
            return RegexFramer(re.compile(c.frame.encode("utf-8")), int(c.max_buffer))
        return LineFramer(c.terminator_bytes, int(c.max_line))

    def restart(self, now_mono: float) -> None:
        """A fresh session: partial frames are forgotten, idle timeouts count from ``now_mono``."""
        self.framer = self._framer()
        self._updated = dict.fromkeys((p.id for p in self.device.points), now_mono)

    # -- bytes in, readings out --------------------------------------------------------------------

    def feed(self, chunk: bytes, now_ns: int, now_mono: float) -> list[Reading]:
        out: list[Reading] = []
        for piece in self.framer.feed(chunk):
            if isinstance(piece, Discarded):
                what = "line" if piece.kind == "oversize" and self.conn.framing != "regex" else "buffer"
                limit = self.conn.max_line if what == "line" else self.conn.max_buffer
                text = (
                    f"{what} of {piece.size}+ bytes exceeds {limit} bytes; discarded"
                    if piece.kind == "oversize"
                    else f"{piece.size} byte(s) between frames"
                )
                self.problem(piece.kind, text, piece.head)
                continue
            self.health.requests += 1
            if self.conn.framing == "nmea":
                self._sentence(piece.data, now_ns, now_mono, out)
            else:
                self._text(piece.data, now_ns, now_mono, out)
        return out

    def _sentence(self, line: bytes, now_ns: int, now_mono: float, out: list[Reading]) -> None:
        sentence, problems = nmea.scan(line, require_checksum=self._require_checksum)
        for p in problems:
            self.problem(p.kind, str(p), line)
        if sentence is None:
            return
        self.health.success(now_ns)
        counted: set[str] = set()
        for route in self.routes.nmea.get(sentence.type, ()):
            if route.talker is not None and route.talker != sentence.talker:
                continue
            try:
                raw = nmea.lookup(sentence, route.field, route.transducer)
            except LineError as exc:
                self._invalid(route.point, f"{sentence.type}: {exc}", exc, line, counted, now_ns, now_mono, out)
                continue
            if raw is nmea.ABSENT:
                continue
            if raw is None:
                what = route.transducer or route.field
                out.append(self._bad(route.point.id, f"{sentence.type} {what} is empty (no data)", now_ns, now_mono))
                continue
            assert not isinstance(raw, nmea.Absent)
            uncertain = nmea.warning(sentence, route.field)
            self._accept(route.point, raw, uncertain, line, counted, now_ns, now_mono, out)

    def _text(self, frame: bytes, now_ns: int, now_mono: float, out: list[Reading]) -> None:
        try:
            text = codec.decode_text(frame, self._encoding)
        except LineError as exc:
            self.problem(exc.kind, str(exc), frame)
            return
        self.health.success(now_ns)
        counted: set[str] = set()
        taken = False
        for route in self.routes.text:
            try:
                raw = extract_text(route, text, self._delimiter)
            except LineError as exc:
                taken = True
                if exc.kind not in counted:
                    counted.add(exc.kind)
                    self.problem(exc.kind, str(exc), frame)
                continue
            if raw is not None:
                taken = True
                self._accept(route.point, raw, "", frame, counted, now_ns, now_mono, out)
        if not taken:
            self.problem("unmatched", "no point takes this frame", frame, log=False)

    def _accept(
        self,
        point: PointConfig,
        raw: Value,
        uncertain: str,
        frame: bytes,
        counted: set[str],
        now_ns: int,
        now_mono: float,
        out: list[Reading],
    ) -> None:
        try:
            value = to_engineering(codec.coerce(raw, point.type), point)
        except LineError as exc:
            self._invalid(point, str(exc), exc, frame, counted, now_ns, now_mono, out)
            return
        self._updated[point.id] = now_mono
        self._last_value[point.id] = value
        self._bad_reason.pop(point.id, None)
        if uncertain:
            out.append(
                Reading(
                    point=point.id,
                    value=value,
                    quality=Quality.UNCERTAIN,
                    reason=uncertain,
                    ts_source=now_ns,
                    ts_gateway=now_ns,
                )
            )
        else:
            out.append(Reading(point=point.id, value=value, ts_source=now_ns, ts_gateway=now_ns))

    def _invalid(
        self,
        point: PointConfig,
        why: str,
        exc: LineError,
        frame: bytes,
        counted: set[str],
        now_ns: int,
        now_mono: float,
        out: list[Reading],
    ) -> None:
        if exc.kind not in counted:
            counted.add(exc.kind)
            self.problem(exc.kind, f"{point.id}: {why}", frame)
        out.append(self._bad(point.id, f"unreadable value: {why}", now_ns, now_mono))

    # -- Bad readings ------------------------------------------------------------------------------

    def _bad(self, point: str, reason: str, now_ns: int, now_mono: float | None = None) -> Reading:
        if now_mono is not None:
            self._updated[point] = now_mono
        self._bad_reason[point] = reason
        return bad(point, reason, ts_source=now_ns, ts_gateway=now_ns, value=self._last_value.get(point))

    def stale(self, now_ns: int, now_mono: float, silent_for: float) -> list[Reading]:
        """Bad ``timeout`` readings for the points that received nothing for ``idle_timeout``."""
        limit = self.conn.idle_timeout
        out: list[Reading] = []
        for point, updated in self._updated.items():
            if now_mono - updated < limit or self._bad_reason.get(point, "").startswith("timeout"):
                continue
            if silent_for >= limit:
                reason = f"timeout: the line has been silent for {limit:g} s"
            else:
                reason = f"timeout: no value received for {limit:g} s"
            out.append(self._bad(point, reason, now_ns))
        return out

    def bad_all(self, reason: str, now_ns: int) -> list[Reading]:
        """Bad readings for every point whose latest reason is not already ``reason``."""
        return [self._bad(p.id, reason, now_ns) for p in self.device.points if self._bad_reason.get(p.id) != reason]

    # -- counting and logging ----------------------------------------------------------------------

    def problem(self, kind: str, text: str, frame: bytes, *, log: bool = True) -> None:
        """Count a survived fault under ``kind`` and log it (the first few, then one in a thousand)."""
        self.health.count(kind)
        seen = self._logged.get(kind, 0) + 1
        self._logged[kind] = seen
        if log and (seen <= LOG_FIRST or seen % LOG_EVERY == 0):
            logger.warning(
                "%s: %s on %s (%s; frame %s)%s",
                self.device.id,
                kind.replace("_", " "),
                self.conn.port,
                text,
                codec.excerpt(frame),
                f" [{seen} so far]" if seen > LOG_FIRST else "",
            )
        else:
            logger.debug("%s: %s on %s: %s", self.device.id, kind, self.conn.port, text)


__all__ = ["Intake"]
