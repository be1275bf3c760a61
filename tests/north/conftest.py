"""A gateway reading the hil Modbus PLC with its northbound endpoints, and the clients that use them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.runtime.gateway import Gateway
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import free_port

WITHIN = 10.0

SITE = """
site: {{id: plant7}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
asset_types:
  - id: pump
    alarms:
      - {{id: hot, value: motor_temperature, kind: high, limit: 80, hysteresis: 0.5}}
    writable: {{speed: {{tolerance: 1, timeout: 5s}}}}
assets:
  - {{id: line1}}
  - {{id: pump1, type: pump, parent: line1}}
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {plc}}}
    timing: {{poll_interval: 100ms, timeout: 500ms, backoff_initial: 100ms, backoff_max: 500ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32, unit: "m³/h"}}
      - {{id: pump1/motor_temperature, address: {{table: holding, address: 9}}, type: int16, scale: 0.1, unit: "°C"}}
      - {{id: pump1/speed, address: {{table: holding, address: 10}}, type: uint16, unit: rpm, writable: true}}
north:
{north}
"""


def site(state: Path, plc: int, north: str) -> str:
    return SITE.format(state=state, plc=plc, north=north)


@asynccontextmanager
async def gateway_with(tmp_path: Path, north: Callable[[int], str]) -> AsyncIterator[tuple[Gateway, ModbusPlc, int]]:
    """The PLC, and a gateway reading it with ``north(port)`` as its north section on a free port."""
    port = free_port()
    async with ModbusPlc() as plc:
        config = parse_config(site(tmp_path / "state", plc.port, north(port)), filename="site.yaml")
        async with Gateway.running(config, clock=SystemClock()) as gateway:
            yield gateway, plc, port


async def north_figures(gateway: Gateway) -> tuple[dict[str, Any], str]:
    """The ``north`` part of ``/status`` and the ``/metrics`` text, over HTTP (open on loopback)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.http_url}/status") as r:
            assert r.status == 200, await r.text()
            north: dict[str, Any] = (await r.json())["north"]
        async with http.get(f"{gateway.http_url}/metrics") as r:
            assert r.status == 200, await r.text()
            metrics = await r.text()
    return north, metrics


async def until(predicate: Callable[[], bool], within: float = WITHIN) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.05)
