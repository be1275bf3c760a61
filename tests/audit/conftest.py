"""Gateways' state directories with a real journal and audit log on disk, for the audit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from avila_edge.audit import AuditLog
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.core import ManualClock, Reading
from avila_edge.journal import Journal

ORIGIN = "avila-edge/test-site"


def readings(clock: ManualClock, start: int, count: int) -> list[Reading]:
    now = clock.now_ns()
    return [
        Reading(
            point=f"pump{(start + i) % 3}/p{(start + i) % 5}", value=float(start + i), ts_source=now, ts_gateway=now
        )
        for i in range(count)
    ]


async def fill(journal: Journal, log: AuditLog, clock: ManualClock, *, batches: int, per_batch: int) -> None:
    """``batches`` appends of ``per_batch`` readings, a signed checkpoint after each."""
    for _ in range(batches):
        await journal.append(readings(clock, journal.next_seq, per_batch))
        clock.advance(1.0)
        assert await log.checkpoint() is not None


async def build(state_dir: Path, *, batches: int = 4, per_batch: int = 50) -> None:
    clock = ManualClock()
    async with Journal.open(state_dir / "journal.sqlite3", JournalConfig(), clock=clock) as journal:
        log = await AuditLog.attach(journal, state_dir=state_dir, config=AuditConfig(), origin=ORIGIN, clock=clock)
        await fill(journal, log, clock, batches=batches, per_batch=per_batch)


@pytest.fixture
def make_state(tmp_path: Path) -> Callable[..., Path]:
    """Build a closed state directory: ``batches`` times ``per_batch`` readings, a checkpoint after each."""

    def make(name: str = "state", **kwargs: int) -> Path:
        state_dir = tmp_path / name
        asyncio.run(build(state_dir, **kwargs))
        return state_dir

    return make
