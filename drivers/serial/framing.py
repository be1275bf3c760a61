"""Cutting frames out of a serial byte stream: pure, no I/O.

``LineFramer`` splits at a terminator and bounds the line length; ``RegexFramer`` takes the matches
of a frame regex and bounds what it keeps while waiting. Both take the stream in chunks of any size
(a terminator or a frame may straddle two chunks) and return, in stream order, ``Frame``s and
``Discarded`` records of what was thrown away and why (``oversize`` or ``garbage``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXCERPT_BYTES = 60


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: a line without its terminator, or the bytes of a regex match."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Discarded:
    """Bytes thrown away: ``kind`` is ``oversize`` or ``garbage``; ``head`` their first bytes."""

    kind: str
    head: bytes
    size: int


Piece = Frame | Discarded


class LineFramer:
    """Lines ended by ``terminator``; a line longer than ``max_line`` bytes is discarded up to the next
    terminator (one ``Discarded("oversize")`` per such line). Empty lines are skipped. With
    ``strip_cr`` a carriage return before the terminator is dropped (LF framing that accepts CR LF).
    """

    def __init__(self, terminator: bytes, max_line: int, *, strip_cr: bool = False) -> None:
        if not terminator:
            raise ValueError("a line terminator cannot be empty")
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.terminator = terminator
        self.max_line = max_line
        self.strip_cr = strip_cr
        self._buf = bytearray()
        self._skipping = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Piece]:
        out: list[Piece] = []
        buf = self._buf
        searched = len(buf)
        buf += chunk
        term = self.terminator
        start = 0
        while True:
            end = buf.find(term, max(start, searched - len(term) + 1))
            if end < 0:
                break
            line = bytes(buf[start:end])
            start = end + len(term)
            if self.strip_cr and line.endswith(b"\r"):
                line = line[:-1]
            if self._skipping:
                self._skipping = False
            elif len(line) > self.max_line:
                out.append(Discarded("oversize", line[:EXCERPT_BYTES], len(line)))
            elif line:
                out.append(Frame(line))
        del buf[:start]
        # a line of max_line bytes may wait with the start of its terminator (and a CR) behind it
        if len(buf) > self.max_line + len(term) - 1 + self.strip_cr:
            # keep the tail that may hold the start of a terminator, drop the rest of the line
            keep = len(term) - 1
            if not self._skipping:
                out.append(Discarded("oversize", bytes(buf[:EXCERPT_BYTES]), len(buf)))
                self._skipping = True
            del buf[: len(buf) - keep]
        return out


class RegexFramer:
    """Frames are the matches of ``frame`` (a compiled bytes regex) in the stream.

    Bytes between two matches that are not only whitespace are ``garbage``. When no match is found
    and more than ``max_buffer`` bytes wait, they are discarded as ``oversize``. The regex should end
    with a delimiter (``\\r\\n``, ``>``, ...): a match is taken as soon as the bytes so far match.
    """

    def __init__(self, frame: re.Pattern[bytes], max_buffer: int) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.frame = frame
        self.max_buffer = max_buffer
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Piece]:
        out: list[Piece] = []
        self._buf += chunk
        data = bytes(self._buf)
        pos = 0
        while pos < len(data):
            m = self.frame.search(data, pos)
            if m is None or m.end() == m.start():
                break
            between = data[pos : m.start()]
            if between.strip():
                out.append(Discarded("garbage", between[:EXCERPT_BYTES], len(between)))
            out.append(Frame(m.group(0)))
            pos = m.end()
        del self._buf[:pos]
        if len(self._buf) > self.max_buffer:
            out.append(Discarded("oversize", bytes(self._buf[:EXCERPT_BYTES]), len(self._buf)))
            self._buf.clear()
        return out


__all__ = ["Discarded", "Frame", "LineFramer", "Piece", "RegexFramer"]
