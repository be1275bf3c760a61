"""Child process for the kill test: ingests and ships at the same time until killed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec

from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal
from avila_edge.sync.mqtt_uplink import MqttUplink


async def main(db: Path, port: int) -> None:
    clock = SystemClock()
    config = msgspec.convert(
        {"host": "127.0.0.1", "port": port, "plaintext": True, "batch_max": 200, "batch_age": 0.01}, MqttUplinkConfig
    )
    async with Journal.open(db, JournalConfig(), clock=clock) as journal, asyncio.TaskGroup() as tg:
        tg.create_task(MqttUplink(config, gateway="gw1", journal=journal, clock=clock).run())
        await journal.append([Reading(point="pump1/x", value=float(i), ts_source=1, ts_gateway=1) for i in range(500)])
        print("shipping", flush=True)
        while True:
            await journal.append([Reading(point="pump1/x", value=1.0, ts_source=1, ts_gateway=1) for _ in range(50)])
            await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
