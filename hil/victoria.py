"""A real VictoriaMetrics (Debian package) on a free loopback port: it accepts the InfluxDB v2 write API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

BINARY = "/usr/bin/victoria-metrics"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VictoriaMetrics:
    """``with VictoriaMetrics() as vm: vm.url`` — stopped and its data removed on exit."""

    def __init__(self, *, binary: str = BINARY, ready_timeout: float = 20.0) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="hil-vm-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self) -> None:
        with (self.workdir / "vm.log").open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed binary, arguments we build
                [
                    self.binary,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.workdir / 'data'}",
                    "-retentionPeriod=100y",
                    "-search.latencyOffset=0s",
                    "-dedup.minScrapeInterval=1ms",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"VictoriaMetrics did not start: {(self.workdir / 'vm.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Every stored series with its samples (``/api/v1/export``), after a flush."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).close()  # noqa: S310
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as r:  # noqa: S310
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
