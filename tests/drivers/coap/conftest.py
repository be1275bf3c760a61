from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import SystemClock
from drivers.coap.config import CoapAddress, CoapConnection
from drivers.coap.driver import CoapDriver
from hil.coap_nodes import CoapNode, free_udp_port

from ..harness import Collector, run_driver

WITHIN = 5.0
"""Deadline of the waits in these tests."""

_ADDRESS_KEYS = set(CoapAddress.__struct_fields__)


def point(pid: str, kind: str = "float64", **kw: Any) -> PointConfig:
    """A point whose address takes the CoapAddress keys of ``kw`` (the rest go to PointConfig)."""
    address = CoapAddress(**{k: v for k, v in kw.items() if k in _ADDRESS_KEYS})
    rest = {k: v for k, v in kw.items() if k not in _ADDRESS_KEYS}
    return PointConfig(id=pid, address=address, type=DataType(kind), **rest)


def client_device(
    port: int, points: Sequence[PointConfig], *, max_silence: float = 0.5, timeout: float = 1.0, **conn: Any
) -> DeviceConfig:
    return DeviceConfig(
        id="node1",
        driver="coap",
        connection=CoapConnection(mode="client", host="127.0.0.1", port=port, max_silence=max_silence, **conn),
        points=tuple(points),
        timing=TimingConfig(timeout=timeout, poll_interval=0.1, backoff_initial=0.05, backoff_max=0.2),
    )


def server_device(port: int, points: Sequence[PointConfig], **conn: Any) -> DeviceConfig:
    return DeviceConfig(
        id="ingest1",
        driver="coap",
        connection=CoapConnection(mode="server", port=port, **conn),
        points=tuple(points),
        timing=TimingConfig(timeout=1.0, backoff_initial=0.05, backoff_max=0.2),
    )


def running(
    dev: DeviceConfig, *, connected: bool = True
) -> contextlib.AbstractAsyncContextManager[tuple[CoapDriver, Collector]]:
    return run_driver(CoapDriver(dev, clock=SystemClock()), connected=connected, within=WITHIN)


@pytest.fixture
async def node() -> AsyncIterator[CoapNode]:
    async with CoapNode(interval=0.05) as n:
        yield n


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()


async def coap_client(*args: str) -> tuple[int, str, str]:
    """Run libcoap's coap-client-notls (an independent client); (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "coap-client-notls", "-B", "3", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(10):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
