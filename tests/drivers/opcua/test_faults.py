"""Link faults and malformed peers: the driver reports Bad with a reason, counts, and recovers."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from avila_edge.core import Quality
from hil.opcua_server import OpcUaPlant

from .conftest import LinkProxy, device, point, running

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[OpcUaPlant]:
    async with OpcUaPlant(assets=("pump1",), policies=("NoSecurity",), tick=0.05) as plant:
        yield plant


async def test_a_silent_link_is_bad_within_the_timeout_and_good_again_when_mended(server: OpcUaPlant) -> None:
    timeout = 1.0
    async with LinkProxy(server.host, server.port) as proxy:
        dev = device(proxy.endpoint(), [point("pump1/flow", server.node_id("pump1", "flow"))], timeout=timeout)
        async with running(dev) as (driver, sink):
            await sink.wait_quality("pump1/flow", Quality.GOOD)
            proxy.cut()
            cut_at = time.monotonic()
            bad = await sink.wait_quality("pump1/flow", Quality.BAD)
            noticed_after = time.monotonic() - cut_at
            proxy.mend()
            await sink.wait_quality("pump1/flow", Quality.GOOD)
            assert driver.health().connected
    assert bad.reason.startswith("link down: ")
    assert "keep-alive" in bad.reason
    assert noticed_after < 3 * timeout  # the watchdog answers within the timeout; the rest is slack for slow CI
    assert driver.health().errors["link_down"] >= 1


async def test_a_stopped_server_is_bad_until_it_serves_again(server: OpcUaPlant) -> None:
    dev = device(server.endpoint, [point("pump1/speed", server.node_id("pump1", "speed"))])
    async with running(dev) as (driver, sink):
        await sink.wait_quality("pump1/speed", Quality.GOOD)
        await server.stop()
        try:
            lost = await sink.wait_quality("pump1/speed", Quality.BAD)
            await sink.wait_for(lambda c: "connection refused" in getattr(c.latest.get("pump1/speed"), "reason", ""))
            refused = sink.latest["pump1/speed"]
        finally:
            await server.start()
        await sink.wait_quality("pump1/speed", Quality.GOOD)
    assert lost.reason.startswith("link down: connection lost")
    assert lost.value is not None  # the last good value travels with the Bad reading
    assert refused.reason == "link down: connection refused"
    assert driver.health().errors["link_down"] >= 2


def _err(code: int, reason: bytes) -> bytes:
    body = struct.pack("<I", code) + struct.pack("<i", len(reason)) + reason
    return b"ERRF" + struct.pack("<I", 8 + len(body)) + body


def _ack(body: bytes, size: int | None = None) -> bytes:
    return b"ACKF" + struct.pack("<I", size if size is not None else 8 + len(body)) + body


_VALID_ACK = _ack(struct.pack("<5I", 0, 65536, 65536, 0, 0))

MALFORMED_REPLIES: list[bytes] = [
    b"",  # the connection is closed at once
    b"\x00\xff" * 64,  # noise
    b"ACKF\x1c\x00",  # a truncated header
    _ack(b"\x00" * 4, size=2**31 - 1),  # a header announcing 2 GiB
    _ack(b"\x00" * 3),  # a truncated acknowledge body
    _err(0x80080000, b"server says no"),  # an Error message (BadTcpMessageTooLarge)
    _err(0x80AB0000, b"\xff\xfe\xfd invalid UTF-8"),  # an unknown status and invalid UTF-8
    _VALID_ACK + b"OPNF" + struct.pack("<I", 60) + b"\x07" * 52,  # a secure-channel reply of garbage
    _VALID_ACK + b"MSGF" + struct.pack("<I", 4096) + b"\x00" * 4088,  # a message on a channel never opened
]


async def test_a_corpus_of_malformed_replies_is_survived_counted_and_reported_bad() -> None:
    connections = 0

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        answer = MALFORMED_REPLIES[connections % len(MALFORMED_REPLIES)]
        connections += 1
        try:
            await reader.read(1024)  # the client's Hello
            writer.write(answer)
            await writer.drain()
            await asyncio.sleep(0.5 if answer else 0)
        except OSError:
            pass
        finally:
            writer.close()

    fake = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = fake.sockets[0].getsockname()[1]
    dev = device(f"opc.tcp://127.0.0.1:{port}/broken", [point("pump1/flow", "ns=2;s=pump1.flow")], timeout=0.3)
    try:
        async with running(dev, connected=False) as (driver, sink):
            async with asyncio.timeout(60):
                while connections < 2 * len(MALFORMED_REPLIES):
                    await asyncio.sleep(0.05)
            health = driver.health()
    finally:
        fake.close()
        await fake.wait_closed()
    readings = sink.of("pump1/flow")
    assert readings
    assert all(r.quality is Quality.BAD and r.reason for r in readings)
    assert not health.connected
    assert sum(health.errors.values()) >= 2 * len(MALFORMED_REPLIES) - 1
    assert {"link_down", "timeout"} <= set(health.errors)
