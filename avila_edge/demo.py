"""``avila-edge demo``: the simulated plant from hil/ and a gateway on the shipped demo site."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import msgspec

from avila_edge.config import load_config
from avila_edge.config.model import GatewayConfig, HttpConfig


def demo_config_path() -> Path:
    return Path(str(resources.files("hil").joinpath("demo-site.yaml")))


def demo_config(state_dir: Path, http_port: int | None) -> GatewayConfig:
    config = load_config(demo_config_path())
    http = config.http if http_port is None else HttpConfig(host=config.http.host, port=http_port)
    return msgspec.structs.replace(config, state_dir=state_dir, http=http)


@contextlib.asynccontextmanager
async def simulated_plant(config: GatewayConfig) -> AsyncIterator[None]:
    """Start a Modbus PLC simulator at every Modbus device's host and port in ``config``."""
    from hil.modbus_plc import ModbusPlc  # noqa: PLC0415 - the demo is the only runtime user of hil

    async with contextlib.AsyncExitStack() as stack:
        for device in config.devices:
            if device.driver == "modbus":
                conn = device.connection
                units = sorted({conn.unit_id, *(p.address.unit_id for p in device.points if p.address.unit_id)})
                await stack.enter_async_context(ModbusPlc(host=conn.host, port=conn.port, unit_ids=tuple(units)))
        yield
