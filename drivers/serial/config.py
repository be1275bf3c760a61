"""Frozen configuration of a serial line instrument (the port, its line settings and framing) and of
one point's address on it.

A line carries frames in one of three ways (``framing``):

- ``line`` — text lines ended by ``terminator``; points take a named group of a ``pattern`` or a
  field after splitting the line on ``delimiter``;
- ``regex`` — frames are the matches of the ``frame`` regular expression over the byte stream (for
  instruments without a line end); points take its named groups, or fields as for ``line``;
- ``nmea`` — NMEA 0183 sentences ``$TTSSS,f1,f2,...*HH`` (LF or CR LF ended, checksum verified);
  points name the sentence type and the field, by index or by name (see ``drivers.serial.nmea``).

Text written in the configuration for terminators, poll requests and command templates may use the
escapes ``\\r``, ``\\n``, ``\\t``, ``\\\\`` and ``\\xHH`` even where YAML does not interpret them
(plain or single-quoted scalars).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from avila_edge.config.units import ByteSize, Duration

Framing = Literal["line", "regex", "nmea"]
Parity = Literal["none", "even", "odd", "mark", "space"]
Encoding = Literal["ascii", "utf-8"]
Checksum = Literal["required", "optional"]

DEFAULT_MAX_LINE = 512
DEFAULT_MAX_BUFFER = 4096
DEFAULT_IDLE_TIMEOUT = 10.0
STOPBITS = (1.0, 1.5, 2.0)

_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|[rnt\\])")
_SIMPLE = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """``text`` with ``\\r``, ``\\n``, ``\\t``, ``\\\\`` and ``\\xHH`` turned into the characters they name."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: _SIMPLE.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), text)


class SerialConnection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The port, its line settings, and how frames are cut out of the byte stream.

    ``max_line`` bounds a line (``line`` and ``nmea`` framing; longer lines are discarded up to the
    next terminator and counted as ``oversize``), ``max_buffer`` the bytes kept while waiting for a
    ``frame`` match (``regex`` framing). ``poll`` is written every ``timing.poll_interval`` for
    instruments that answer on request. A point that receives no value for ``idle_timeout`` goes
    Bad with a reason that starts with ``timeout``.
    """

    port: str
    baudrate: Annotated[int, msgspec.Meta(gt=0)] = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Parity = "none"
    stopbits: float = 1.0
    framing: Framing = "line"
    terminator: str = "\r\n"
    max_line: ByteSize = DEFAULT_MAX_LINE
    frame: str | None = None
    max_buffer: ByteSize = DEFAULT_MAX_BUFFER
    encoding: Encoding = "ascii"
    pattern: str | None = None
    delimiter: str = ","
    checksum: Checksum = "required"
    poll: str | None = None
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT

    @property
    def terminator_bytes(self) -> bytes:
        return unescape(self.terminator).encode(self.encoding)

    @property
    def poll_bytes(self) -> bytes | None:
        return None if self.poll is None else unescape(self.poll).encode(self.encoding)


class SerialAddress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where one point's value is on the line.

    ``line``/``regex`` framing: ``group`` (a named or numbered group of ``pattern``, of the
    connection's ``pattern``, or of the ``frame`` regex) or ``field`` (an index after splitting the
    frame on the connection's ``delimiter``, 0 = the first piece, negative counts from the end).
    A point-level ``pattern`` also selects the frames the point takes: frames it does not match
    are not for this point.

    ``nmea`` framing: ``sentence`` (``GGA``, ``RMC``, ``MTW``, ``XDR`` ...; any talker unless
    ``talker`` is given) and ``field`` (an index, 1 = the first field after the address, or a
    name from the built-in table), or for ``XDR`` the ``transducer`` name.

    ``command`` makes the point writable: a template such as ``"SET {value:.1f}\\r\\n"`` written to
    the line with the raw value (after scale and offset are undone).
    """

    pattern: str | None = None
    group: str | int | None = None
    field: int | str | None = None
    sentence: str | None = None
    talker: str | None = None
    transducer: str | None = None
    command: str | None = None


__all__ = ["SerialAddress", "SerialConnection", "unescape"]
