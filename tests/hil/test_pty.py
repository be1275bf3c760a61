"""The socat pty pair carries bytes both ways, and a cut cable comes back at the same paths."""

from __future__ import annotations

import os
import termios
import tty

from hil.pty import PtyPair


def _open(path: os.PathLike[str]) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def _read(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        out += os.read(fd, n - len(out))
    return out


def test_bytes_cross_both_ways_and_survive_a_cut() -> None:
    with PtyPair() as pair:
        for _ in range(2):
            a, b = _open(pair.device), _open(pair.instrument)
            try:
                os.write(a, b"\x01\x03\x00\x00\x00\x01\x84\x0a")
                assert _read(b, 8) == b"\x01\x03\x00\x00\x00\x01\x84\x0a"
                os.write(b, b"$GPGGA*00\r\n")
                assert _read(a, 11) == b"$GPGGA*00\r\n"
                termios.tcdrain(a)
            finally:
                os.close(a)
                os.close(b)
            pair.cut()
            assert not pair.running
            pair.restore()
            assert pair.running and pair.device.exists()
