"""Child process for the index kill -9 test: appends forever with a short index tail, so the kill
lands before, during and after many index batches."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from avila_edge.config.model import JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal


async def main(path: Path) -> None:
    clock = SystemClock()
    async with Journal.open(path, JournalConfig(), clock=clock) as journal:
        journal._writer_store().index_every = 120
        n = journal.next_seq
        while True:
            now = clock.now_ns()
            batch = [
                Reading(point=f"pump1/p{(n + i) % 7}", value=float(n + i), ts_source=now, ts_gateway=now + i)
                for i in range(50)
            ]
            committed = await journal.append(batch)
            sys.stdout.write(f"{committed[0].seq} {committed[-1].seq}\n")
            sys.stdout.flush()
            n = (committed[-1].seq or 0) + 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
