from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def status(base: str) -> dict[str, Any]:
    code, body = get(base + "/status")
    assert code == 200
    result: dict[str, Any] = json.loads(body)
    return result


async def until(predicate: Any, within: float = 20.0, step: float = 0.1) -> None:
    async with asyncio.timeout(within):
        while True:
            try:
                if await asyncio.to_thread(predicate):
                    return
            except OSError:
                pass
            await asyncio.sleep(step)


class GatewayProcess:
    """``avila-edge`` in a subprocess; its output goes to files (a pipe nobody reads would fill up and
    block a chatty gateway)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "avila_edge.cli", *args],
            stdout=self._out,
            stderr=self._err,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> tuple[str, str]:
        """What it printed so far: stdout, stderr."""
        texts = []
        for f in (self._out, self._err):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
        return texts[0], texts[1]

    def stop(self, timeout: float = 20.0) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        out, err = self.output()
        self.close()
        return self.proc.returncode, out, err

    def close(self) -> None:
        self._out.close()
        self._err.close()


@pytest.fixture
def gateway_process() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for g in started:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
        g.close()


def write_site(tmp: Path, plc_port: int, http_port: int, poll: str = "200ms") -> Path:
    config = tmp / "site.yaml"
    config.write_text(
        f"""
site: {{id: e2e}}
state_dir: state
http: {{host: 127.0.0.1, port: {http_port}}}
logging: {{format: json, level: info}}
assets: [{{id: pump1}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {plc_port}}}
    timing: {{poll_interval: {poll}, timeout: 300ms, backoff_initial: 100ms, backoff_max: 500ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32}}
      - {{id: pump1/speed, address: {{table: holding, address: 10}}, type: uint16, writable: true}}
"""
    )
    return config
