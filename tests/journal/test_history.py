"""History queries: a point's readings in a time range, raw or downsampled, found without a full scan."""

from __future__ import annotations

from pathlib import Path

from avila_edge.config.model import JournalConfig
from avila_edge.core import Event, ManualClock, Quality, Reading
from avila_edge.journal import Journal

S = 1_000_000_000
T0 = 1_760_000_000 * S


def reading(point: str, value: float | str, ts: int, quality: Quality = Quality.GOOD) -> Reading:
    reason = "" if quality is Quality.GOOD else "timeout"
    return Reading(point=point, value=value, ts_source=ts, ts_gateway=ts, quality=quality, reason=reason)


async def test_history_returns_one_points_readings_in_the_range(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=ManualClock()) as j:
        for i in range(100):
            await j.append([reading("p/a", float(i), T0 + i * S), reading("p/b", -float(i), T0 + i * S)])
            if i % 10 == 0:
                await j.append_events([Event(kind="note", source="test", ts=T0 + i * S)])
        got = await j.history("p/a", T0 + 10 * S, T0 + 20 * S)
        assert [r.value for r in got] == [float(i) for i in range(10, 20)]
        assert all(r.point == "p/a" and r.seq is not None for r in got)
        assert [r.value for r in await j.history("p/b", T0 + 98 * S, T0 + 1000 * S)] == [-98.0, -99.0]
        assert await j.history("p/a", T0 - 10 * S, T0) == []
        assert await j.history("nope", T0, T0 + 100 * S) == []
        assert len(await j.history("p/a", T0, T0 + 100 * S, limit=7)) == 7


async def test_buckets_summarise_numeric_not_bad_readings(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=ManualClock()) as j:
        await j.append([reading("p/a", float(i), T0 + i * S) for i in range(60)])
        await j.append([reading("p/a", 1e9, T0 + 61 * S, Quality.BAD), reading("p/a", "text", T0 + 62 * S)])
        buckets = await j.history_buckets("p/a", T0, T0 + 70 * S, 20 * S)
        assert [(b.start_ns, b.count, b.min, b.max, b.mean) for b in buckets] == [
            (T0, 20, 0.0, 19.0, 9.5),
            (T0 + 20 * S, 20, 20.0, 39.0, 29.5),
            (T0 + 40 * S, 20, 40.0, 59.0, 49.5),
        ]
