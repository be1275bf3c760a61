from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator

import aiomqtt
import pytest

from avila_edge.journal import EntryKind
from avila_edge.sync.batch import Batch, decode_batch
from hil.mosquitto import Mosquitto


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


class Fleet:
    """A minimal cloud side for tests: records every (seq, kind) received, counting duplicates."""

    def __init__(self) -> None:
        self.seqs: dict[int, int] = {}
        self.order: list[tuple[int, int]] = []
        self.batches: list[int] = []
        """Entries per batch received, in arrival order."""
        self.changed = asyncio.Event()

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seqs.values())

    def take(self, payload: bytes) -> Batch:
        batch = decode_batch(payload)
        self.batches.append(batch.count)
        for seq, kind, _ in batch.entries:
            self.seqs[seq] = self.seqs.get(seq, 0) + 1
            self.order.append((seq, kind))
        self.changed.set()
        return batch

    def kinds_in_order(self) -> list[EntryKind]:
        return [EntryKind(k) for _, k in self.order]

    async def until(self, predicate: object, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def fleet(broker: Mosquitto) -> AsyncIterator[Fleet]:
    f = Fleet()

    async def listen() -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-fleet", clean_session=False) as c:
                    await c.subscribe("avila/+/batch", qos=1)
                    async for message in c.messages:
                        batch = f.take(bytes(message.payload))  # type: ignore[arg-type]
                        # acknowledge like the fleet receiver does (used by uplinks with ack: fleet)
                        lane = "events" if all(k == EntryKind.EVENT for _, k, _ in batch.entries) else "readings"
                        ack = json.dumps({"lane": lane, "last": batch.last})
                        await c.publish(f"avila/{batch.gateway}/ack", ack, qos=1)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    yield f
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
