from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
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
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "avila_edge.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )

    def stop(self, timeout: float = 20.0) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()


@pytest.fixture
def gateway_process() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for g in started:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.communicate()


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
