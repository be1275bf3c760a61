"""A filesystem that really fills up (a small tmpfs mounted for the test): every append that was
acknowledged stays readable, a refused append raises ``JournalError`` and leaves no trace, and once
space is back the journal goes on at the next seq, also after a reopen."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from avila_edge.config.model import JournalConfig
from avila_edge.core import JournalError, Reading, SystemClock
from avila_edge.journal import EntryKind, Journal

DISK = "2m"
BALLAST_CHUNK = 64 << 10


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of its own (needs CAP_SYS_ADMIN, as the test rigs and the firmware build have)."""
    mount = shutil.which("mount") or "/usr/bin/mount"
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run([mount.replace("mount", "umount"), str(folder)], check=False)


def readings(n: int, start: int) -> list[Reading]:
    return [Reading(point=f"pump1/p{i % 4}", value=float(start + i), ts_source=1, ts_gateway=1) for i in range(n)]


def numbers(rs: list[Reading]) -> dict[int, float]:
    """seq → value of committed readings."""
    out = {}
    for r in rs:
        assert r.seq is not None and isinstance(r.value, float)
        out[r.seq] = r.value
    return out


def fill(folder: Path, *, leave: int) -> Path:
    """Fill the filesystem with a ballast file until at most ``leave`` bytes are free."""
    ballast = folder / "ballast"
    with ballast.open("wb") as f:
        while True:
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            if free <= leave:
                break
            try:
                f.write(b"\0" * min(BALLAST_CHUNK, free - leave))
                f.flush()
            except OSError:
                break
    return ballast


async def test_a_full_filesystem_loses_no_acknowledged_reading_and_the_journal_recovers(small_disk: Path) -> None:
    path = small_disk / "journal.sqlite3"
    acknowledged: dict[int, float] = {}
    reasons: list[str] = []
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as journal:
        first = await journal.append(readings(100, 0))
        acknowledged.update(numbers(first))
        ballast = fill(small_disk, leave=256 << 10)
        n = 100
        for _ in range(400):  # bounded: 256 KiB free is gone long before 400 batches of 200
            try:
                committed = await journal.append(readings(200, n))
            except JournalError as exc:
                reasons.append(str(exc))
                if len(reasons) >= 3:  # refused again and again while the disk stays full
                    break
                continue
            acknowledged.update(numbers(committed))
            n += 200
        assert len(reasons) >= 3, "the filesystem never filled up"
        assert all("full" in r for r in reasons), reasons  # SQLite's "database or disk is full", named
        assert len(acknowledged) > 100
        # the gateway keeps running: what was acknowledged is all there, in order, nothing twice
        stored = await journal.read(0, 1_000_000)
        assert numbers([e.reading() for e in stored]) == acknowledged
        assert journal.next_seq == max(acknowledged) + 1
        # space comes back: appends go on at the next seq, without a hole
        ballast.unlink()
        after = await journal.append(readings(10, 10**6))
        assert [r.seq for r in after] == list(range(max(acknowledged) + 1, max(acknowledged) + 11))
        acknowledged.update(numbers(after))
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as journal:
        stored = await journal.read(0, 1_000_000, kinds=[EntryKind.READING])
        assert numbers([e.reading() for e in stored]) == acknowledged
        assert [e.seq for e in stored] == list(range(len(acknowledged)))


async def test_a_journal_reopened_on_a_full_filesystem_still_reads_everything(small_disk: Path) -> None:
    path = small_disk / "journal.sqlite3"
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings(500, 0))
    ballast = fill(small_disk, leave=0)
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as journal:
        stored = await journal.read(0, 10_000)
        assert list(numbers([e.reading() for e in stored]).values()) == [float(i) for i in range(500)]
        refused = None
        for i in range(50):  # bounded
            try:
                await journal.append(readings(200, 500 + i * 200))
            except JournalError as exc:
                refused = exc
                break
        assert refused is not None, "the filesystem never filled up"
    ballast.unlink()
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as journal:
        stored = await journal.read(0, 100_000)
        assert [e.seq for e in stored] == list(range(journal.next_seq))
        assert list(numbers([e.reading() for e in stored[:500]]).values()) == [float(i) for i in range(500)]
