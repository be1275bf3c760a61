"""``python -m hil serial-instrument`` makes its own pty pair, talks on it and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_subcommand_serves_line_frames_on_the_pty_it_prints() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil", "serial-instrument", "--protocol", "line", "--interval", "0.05"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        m = re.search(r"open (\S+) from the gateway", first)
        assert m, first
        fd = os.open(m.group(1), os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            received = b""
            deadline = time.monotonic() + 3
            while not (frame := re.search(rb"PUMP,[^\r]*\r\n", received)) and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.1)[0]:
                    received += os.read(fd, 4096)
            assert frame is not None, received
            assert len(frame.group(0).split(b",")) == 8, frame
        finally:
            os.close(fd)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        if proc.stdout is not None:
            proc.stdout.close()
