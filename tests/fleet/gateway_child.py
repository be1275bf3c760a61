"""Child process for the gateway kill loop: ingests readings (value = seq, distinct source times) and
ships them with fleet acks at the same time, until killed."""

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

T0 = 1_760_000_000 * 10**9


async def main(db: Path, port: int) -> None:
    clock = SystemClock()
    config = msgspec.convert(
        {"host": "127.0.0.1", "port": port, "plaintext": True, "ack": "fleet", "ack_timeout": 1.0, "batch_max": 100,
         "batch_age": 0.01},
        MqttUplinkConfig,
    )  # fmt: skip
    async with Journal.open(db, JournalConfig(), clock=clock) as journal, asyncio.TaskGroup() as tg:
        tg.create_task(MqttUplink(config, gateway="gw1", journal=journal, clock=clock).run())
        print("shipping", flush=True)
        while True:
            n = journal.next_seq
            batch = [Reading(point=f"pump1/p{(n + i) % 4}", value=float(n + i), ts_source=T0 + (n + i) * 10**6,
                             ts_gateway=T0) for i in range(50)]  # fmt: skip
            await journal.append(batch)
            await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
