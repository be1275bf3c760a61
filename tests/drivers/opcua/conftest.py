from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import SystemClock
from drivers.opcua.config import OpcUaAddress, OpcUaConnection
from drivers.opcua.driver import OpcUaDriver

from ..harness import Collector, run_driver
from ..harness import wait_connected as _wait_connected

_ADDRESS_KEYS = set(OpcUaAddress.__struct_fields__) - {"node"}


def point(pid: str, node: str, kind: str = "float64", **kw: Any) -> PointConfig:
    """A point on ``node``; the OpcUaAddress keys of ``kw`` go to the address, the rest to PointConfig."""
    address = OpcUaAddress(node=node, **{k: v for k, v in kw.items() if k in _ADDRESS_KEYS})
    rest = {k: v for k, v in kw.items() if k not in _ADDRESS_KEYS}
    return PointConfig(id=pid, address=address, type=DataType(kind), **rest)


def device(
    endpoint: str,
    points: Sequence[PointConfig],
    *,
    timeout: float = 2.0,
    device_id: str = "srv1",
    poll_interval: float = 0.05,
    **conn: Any,
) -> DeviceConfig:
    return DeviceConfig(
        id=device_id,
        driver="opcua",
        connection=OpcUaConnection(endpoint=endpoint, session_timeout=10.0, **conn),
        points=tuple(points),
        timing=TimingConfig(poll_interval=poll_interval, timeout=timeout, backoff_initial=0.05, backoff_max=0.3),
    )


WITHIN = 15.0
"""Deadline of the waits in these tests."""


def running(
    dev: DeviceConfig, *, connected: bool = True
) -> contextlib.AbstractAsyncContextManager[tuple[OpcUaDriver, Collector]]:
    """Run the driver in a task group; wait until it is connected (unless ``connected=False``)."""
    return run_driver(OpcUaDriver(dev, clock=SystemClock()), connected=connected, within=WITHIN)


async def wait_connected(driver: OpcUaDriver, within: float = WITHIN) -> None:
    await _wait_connected(driver, within)


class LinkProxy:
    """A TCP proxy on a free loopback port in front of ``target``.

    ``cut()`` makes the link silent (bytes are read and dropped both ways, no connection is closed:
    a pulled cable, not a refused connection); ``mend()`` forwards again for new connections.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.silent = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> LinkProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()

    def endpoint(self, path: str = "/avila-edge/plant") -> str:
        return f"opc.tcp://127.0.0.1:{self.port}{path}"

    def cut(self) -> None:
        self.silent = True

    def mend(self) -> None:
        self.silent = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        born_silent = self.silent
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(reader, up_writer, born_silent), name="proxy.up")
                tg.create_task(self._pump(up_reader, writer, born_silent), name="proxy.down")
        except* (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, born_silent: bool) -> None:
        while data := await reader.read(65536):
            if self.silent or born_silent:
                continue  # dropped on the floor: the peer hears nothing
            writer.write(data)
            await writer.drain()
        writer.close()
