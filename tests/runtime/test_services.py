"""A service that fails (here the OPC UA server, its port taken) does not take the gateway down: the
drivers and the journal keep going, /healthz names the failure, and the service starts again once it can."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.runtime import gateway as gateway_module
from avila_edge.runtime.gateway import Gateway
from hil.modbus_plc import ModbusPlc

SITE = """
site: {{id: plant7}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
assets: [{{id: pump1}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {plc}}}
    timing: {{poll_interval: 100ms, timeout: 500ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32}}
north:
  opcua: {{port: {opcua}, policies: [], allow_none: true, anonymous: true}}
"""


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_a_failing_service_is_restarted_and_the_gateway_keeps_running(tmp_path: Path) -> None:
    gateway_module.SERVICE_BACKOFF = (0.2, 0.5)  # type: ignore[misc]
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            async with ModbusPlc() as plc:
                config = parse_config(SITE.format(state=tmp_path, plc=plc.port, opcua=port), filename="site.yaml")
                async with Gateway.running(config, clock=SystemClock()) as gateway:
                    async with asyncio.timeout(20):
                        while "north.opcua" not in gateway.service_problems:
                            await asyncio.sleep(0.05)
                    assert any(p.startswith("north.opcua failed:") for p in gateway.health_problems())
                    before = gateway.pipeline.counters.accepted
                    await asyncio.sleep(0.5)
                    assert gateway.pipeline.counters.accepted > before  # the drivers go on
                    taken.close()  # the port is free again
                    async with asyncio.timeout(30):
                        while not await listening(port):
                            await asyncio.sleep(0.1)
                    assert not gateway.service_problems  # the OPC UA server is up this time
                    assert not gateway.health_problems()
    finally:
        gateway_module.SERVICE_BACKOFF = (1.0, 60.0)  # type: ignore[misc]
