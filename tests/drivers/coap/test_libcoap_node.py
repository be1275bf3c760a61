"""Client mode against libcoap's coap-server-notls, an independent CoAP node: observe, PUT, restart."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest

from avila_edge.core import Quality
from hil.coap_nodes import free_udp_port

from .conftest import client_device, coap_client, point, running

pytestmark = pytest.mark.skipif(shutil.which("coap-server-notls") is None, reason="libcoap3-bin is not installed")


class LibcoapNode:
    """coap-server-notls on a free loopback port; its /example_data is observable and takes PUTs."""

    def __init__(self) -> None:
        self.port = free_udp_port()
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "coap-server-notls", "-A", "127.0.0.1", "-p", str(self.port), "-v", "0",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(5):
            while (await coap_client("-m", "get", f"coap://127.0.0.1:{self.port}/"))[0] != 0:
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            async with asyncio.timeout(5):
                await proc.wait()


@contextlib.asynccontextmanager
async def libcoap_node() -> AsyncIterator[LibcoapNode]:
    node = LibcoapNode()
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def put(node: LibcoapNode, text: str) -> None:
    code, _, err = await coap_client("-m", "put", "-e", text, f"coap://127.0.0.1:{node.port}/example_data")
    assert (code, err) == (0, ""), err


async def test_an_independent_node_notifies_what_another_client_puts_and_what_the_driver_writes() -> None:
    async with libcoap_node() as node:
        await put(node, "20.5")
        dev = client_device(node.port, [point("tank1/level", path="/example_data", writable=True)], max_silence=60)
        async with running(dev) as (driver, sink):
            await sink.wait_value("tank1/level", 20.5)
            await put(node, "21.25")  # coap-client's PUT reaches us as a notification of the observation
            await sink.wait_value("tank1/level", 21.25)
            await driver.write("tank1/level", 7.5)  # our PUT, answered and notified by libcoap
            await sink.wait_value("tank1/level", 7.5)
            code, out, _ = await coap_client("-m", "get", f"coap://127.0.0.1:{node.port}/example_data")
    assert (code, out.strip()) == (0, "7.5")
    assert [r.value for r in sink.of("tank1/level")] == [20.5, 21.25, 7.5]
    assert driver.health().errors == {}


async def test_a_restarted_independent_node_is_bad_then_observed_again_once() -> None:
    async with libcoap_node() as node:
        await put(node, "1")
        dev = client_device(node.port, [point("tank1/level", path="/example_data")], max_silence=0.5)
        async with running(dev) as (driver, sink):
            await sink.wait_value("tank1/level", 1.0)
            for i in range(2):
                await node.stop()
                bad = await sink.wait_quality("tank1/level", Quality.BAD)
                assert bad.reason
                await node.start()
                await put(node, str(10 + i))
                await sink.wait_value("tank1/level", float(10 + i))
            before = len(sink.of("tank1/level"))
            await put(node, "99")
            await sink.wait_value("tank1/level", 99.0)
            await asyncio.sleep(0.3)
    # one observation after the restarts: one notification, one reading
    assert len(sink.of("tank1/level")) == before + 1
    assert driver.health().errors
