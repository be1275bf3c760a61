"""Child process for the kill -9 test: a journal with the audit log attached, appending and
checkpointing forever, reporting each committed seq range."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from avila_edge.audit import AuditLog
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal


async def main(state_dir: Path) -> None:
    clock = SystemClock()
    async with Journal.open(state_dir / "journal.sqlite3", JournalConfig(), clock=clock) as journal:
        log = await AuditLog.attach(
            journal, state_dir=state_dir, config=AuditConfig(), origin="avila-edge/crash-test", clock=clock
        )
        n = 0
        while True:
            now = clock.now_ns()
            batch = [
                Reading(point=f"pump1/p{i % 7}", value=float(n + i), ts_source=now, ts_gateway=now) for i in range(50)
            ]
            committed = await journal.append(batch)
            if n % 500 == 0:
                await log.checkpoint()
            sys.stdout.write(f"{committed[0].seq} {committed[-1].seq}\n")
            sys.stdout.flush()
            n += 50


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
