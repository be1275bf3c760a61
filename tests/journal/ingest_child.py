"""Child process for the kill -9 test: appends batches forever, reporting each committed seq range."""

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
        n = journal.next_seq
        while True:
            now = clock.now_ns()
            batch = [
                Reading(point=f"pump1/p{(n + i) % 7}", value=float(n + i), ts_source=now, ts_gateway=now)
                for i in range(50)
            ]
            committed = await journal.append(batch)
            first, last = committed[0].seq, committed[-1].seq
            sys.stdout.write(f"{first} {last}\n")
            sys.stdout.flush()
            n = (last or 0) + 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
