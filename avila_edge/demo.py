"""``avila-edge demo``: the simulated plant from hil/ and a gateway on the shipped demo site."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from avila_edge.config import load_config
from avila_edge.config.model import DeviceConfig, GatewayConfig, HttpConfig

logger = logging.getLogger(__name__)


def demo_config_path() -> Path:
    return Path(str(resources.files("hil").joinpath("demo-site.yaml")))


def demo_config(state_dir: Path, http_port: int | None) -> GatewayConfig:
    config = load_config(demo_config_path())
    http = config.http if http_port is None else HttpConfig(host=config.http.host, port=http_port)
    return msgspec.structs.replace(config, state_dir=state_dir, http=http)


@contextlib.asynccontextmanager
async def simulated_plant(config: GatewayConfig) -> AsyncIterator[None]:
    """Start the hil/ simulator behind every device of ``config``: a Modbus PLC at each Modbus
    device's address, an OPC UA server at each OPC UA endpoint, and for MQTT devices a Mosquitto
    broker at their address with a sensor fleet publishing the assets their points name."""
    async with contextlib.AsyncExitStack() as stack:
        for device in config.devices:
            assets = tuple(sorted({p.id.split("/", 1)[0] for p in device.points}))
            if device.driver == "modbus":
                await stack.enter_async_context(_modbus(device))
            elif device.driver == "opcua":
                await stack.enter_async_context(_opcua(device.connection.endpoint, assets))
            elif device.driver == "mqtt":
                await stack.enter_async_context(_mqtt(device.connection.host, device.connection.port, assets))
        yield


def _modbus(device: DeviceConfig) -> contextlib.AbstractAsyncContextManager[object]:
    from hil.modbus_plc import ModbusPlc  # noqa: PLC0415 - the demo is the only runtime user of hil

    conn = device.connection
    units = sorted({conn.unit_id, *(p.address.unit_id for p in device.points if p.address.unit_id)})
    return ModbusPlc(host=conn.host, port=conn.port, unit_ids=tuple(units))


def _opcua(endpoint: str, assets: tuple[str, ...]) -> contextlib.AbstractAsyncContextManager[object]:
    from hil.opcua_server import OpcUaPlant  # noqa: PLC0415

    where = urlsplit(endpoint)
    return OpcUaPlant(host=where.hostname or "127.0.0.1", port=where.port or 4840, assets=assets,
                      policies=("NoSecurity",), tick=0.5)  # fmt: skip


@contextlib.asynccontextmanager
async def _mqtt(host: str, port: int, assets: tuple[str, ...]) -> AsyncIterator[None]:
    """A broker on loopback (when ``host`` is local) and pumps publishing JSON to it every second."""
    from hil.mosquitto import MOSQUITTO, Mosquitto  # noqa: PLC0415
    from hil.mqtt_sensors import SensorFleet  # noqa: PLC0415

    async with contextlib.AsyncExitStack() as stack:
        if host in ("127.0.0.1", "localhost"):
            if not await asyncio.to_thread(Path(MOSQUITTO).exists):
                logger.warning("%s is not installed: the demo's MQTT sensors (%s) stay offline", MOSQUITTO, assets)
                yield
                return
            await stack.enter_async_context(Mosquitto(port=port))
        fleet = await stack.enter_async_context(
            SensorFleet(host, port, assets=assets, client_id="hil-demo-sensors", qos=0)
        )
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fleet.run(1.0), name="hil[mqtt].sensors")
            try:
                yield
            finally:
                task.cancel()
