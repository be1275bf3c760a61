"""A pair of linked serial pseudo-terminals made by socat, standing in for an RS-232/RS-485 cable.

    with PtyPair() as pair:            # or: async with PtyPair() as pair:
        ... open pair.device (the gateway's side) and pair.instrument (the simulator's side) ...
        pair.cut()                      # the cable is pulled: socat exits, both ends see EOF/EIO
        pair.restore()                  # plugged back in, same paths

socat creates the two ptys and symlinks them at stable paths in a temp dir, so a restore keeps the
names a config refers to. ``raw,echo=0`` on both ends: bytes pass untouched, in both directions.
Imports nothing of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

SOCAT = shutil.which("socat") or "/usr/bin/socat"
START_TIMEOUT = 5.0


class PtyPair:
    """Two linked ptys: ``device`` (open this from the gateway) and ``instrument`` (the simulator's end)."""

    def __init__(self, folder: Path | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="avila-pty-")
            folder = Path(self._tmp.name)
        self.folder = folder
        self.device = folder / "device"
        self.instrument = folder / "instrument"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is not None:
            return
        for link in (self.device, self.instrument):
            link.unlink(missing_ok=True)
        self._proc = subprocess.Popen(  # noqa: S603 - fixed program, paths we made
            [
                SOCAT,
                f"pty,raw,echo=0,link={self.device}",
                f"pty,raw,echo=0,link={self.instrument}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.device.exists() and self.instrument.exists()):
            if self._proc.poll() is not None:
                raise RuntimeError(f"socat exited with {self._proc.returncode} before creating the ptys")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("socat did not create the ptys in time")
            time.sleep(0.01)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cut(self) -> None:
        """Pull the cable: both ends go away until :meth:`restore`."""
        self.stop()

    def restore(self) -> None:
        """Plug the cable back in (new ptys behind the same link paths)."""
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)
