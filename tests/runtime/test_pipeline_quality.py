"""Pipeline rules beyond the basics: quality transitions always pass, unknown points logged once, one append per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avila_edge.config.model import AssetConfig, DeviceConfig, GatewayConfig, JournalConfig, PointConfig, SiteConfig
from avila_edge.core import Quality, Reading, SystemClock
from avila_edge.journal import Journal
from avila_edge.runtime.pipeline import Pipeline
from avila_edge.twins.service import TwinService

CONFIG = GatewayConfig(
    site=SiteConfig(id="t"),
    assets=(AssetConfig(id="pump1"),),
    devices=(
        DeviceConfig(
            id="d",
            driver="modbus",
            connection=None,
            points=(
                PointConfig(id="pump1/flow", address=None, deadband=0.5),
                PointConfig(id="pump1/speed", address=None),
            ),
        ),
    ),
)


def r(
    value: float | None, t: float, point: str = "pump1/flow", quality: Quality = Quality.GOOD, reason: str = ""
) -> Reading:
    ns = int(t * 1e9)
    return Reading(point=point, value=value, quality=quality, reason=reason, ts_source=ns, ts_gateway=ns)


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        yield Pipeline(CONFIG, journal, TwinService(CONFIG))


async def journaled(p: Pipeline) -> list[tuple[object, Quality, str]]:
    return [(x.value, x.quality, x.reason) for x in (e.reading() for e in await p.journal.read(0, 1000))]


async def test_a_quality_change_passes_the_deadband_even_when_the_value_did_not_move(pipeline: Pipeline) -> None:
    await pipeline([
        r(10.0, 0),
        r(10.0, 1, quality=Quality.UNCERTAIN, reason="sensor out of calibration"),
        r(10.1, 2, quality=Quality.UNCERTAIN, reason="sensor out of calibration"),
        r(10.1, 3),
    ])  # fmt: skip
    assert await journaled(pipeline) == [
        (10.0, Quality.GOOD, ""),
        (10.0, Quality.UNCERTAIN, "sensor out of calibration"),
        (10.1, Quality.GOOD, ""),
    ]


async def test_bad_to_good_passes_even_within_the_deadband_of_the_last_good_value(pipeline: Pipeline) -> None:
    await pipeline([r(10.0, 0), r(None, 1, quality=Quality.BAD, reason="timeout"), r(10.2, 2)])
    assert [q for _, q, _ in await journaled(pipeline)] == [Quality.GOOD, Quality.BAD, Quality.GOOD]


async def test_a_bad_reading_with_a_new_reason_is_journaled(pipeline: Pipeline) -> None:
    await pipeline([
        r(None, 0, quality=Quality.BAD, reason="timeout"),
        r(None, 1, quality=Quality.BAD, reason="timeout"),
        r(None, 2, quality=Quality.BAD, reason="link down"),
    ])  # fmt: skip
    assert [reason for _, _, reason in await journaled(pipeline)] == ["timeout", "link down"]
    assert pipeline.counters.filtered == 1


async def test_without_a_deadband_only_exact_repeats_are_filtered(pipeline: Pipeline) -> None:
    await pipeline([r(5.0, 0, "pump1/speed"), r(5.0, 1, "pump1/speed"), r(5.001, 2, "pump1/speed")])
    assert [v for v, _, _ in await journaled(pipeline)] == [5.0, 5.001]


async def test_an_unknown_point_is_logged_once_but_counted_every_time(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="avila_edge.runtime.pipeline"):
        for t in range(3):
            await pipeline([r(1.0, t, "pump9/ghost"), r(2.0, t, "pump9/other")])
    assert pipeline.counters.rejected == 6
    messages = [rec.getMessage() for rec in caplog.records]
    assert messages.count("reading for unknown point 'pump9/ghost' refused (not in the configuration)") == 1
    assert messages.count("reading for unknown point 'pump9/other' refused (not in the configuration)") == 1
    assert await journaled(pipeline) == []


async def test_a_batch_is_one_journal_commit_and_the_live_table_holds_the_committed_seq(pipeline: Pipeline) -> None:
    batch = [r(float(i), i * 0.001) for i in range(200)] + [r(7.0, 1, "pump1/speed")]
    before = pipeline.journal.stats().commits
    await pipeline(batch)
    assert pipeline.journal.stats().commits == before + 1
    latest = pipeline.latest["pump1/flow"]
    assert latest.value == 199.0
    assert latest.seq is not None
    (entry,) = await pipeline.journal.read(latest.seq, 1)
    assert entry.reading().value == 199.0
    assert pipeline.latest["pump1/speed"].seq == latest.seq + 1


async def test_a_filtered_reading_leaves_the_live_table_at_the_last_accepted_value(pipeline: Pipeline) -> None:
    await pipeline([r(10.0, 0)])
    await pipeline([r(10.4, 1)])
    assert pipeline.latest["pump1/flow"].value == 10.0
    assert pipeline.latest["pump1/flow"].seq == 0


@contextlib.asynccontextmanager
async def committing_slowly(pipeline: Pipeline, batch: list[Reading]) -> AsyncIterator[None]:
    """Inside the block, ``pipeline(batch)`` is in the middle of its journal commit; it completes on exit."""
    entered, release = threading.Event(), threading.Event()

    def slow_disk(conn: object, entries: object) -> None:
        entered.set()
        release.wait(30)

    pipeline.journal._writer_store().hooks.append(slow_disk)
    try:
        async with asyncio.TaskGroup() as tg:
            appending = tg.create_task(pipeline(batch))
            assert await asyncio.to_thread(entered.wait, 15)
            yield
            pipeline.journal._writer_store().hooks.clear()
            release.set()
    finally:
        release.set()
    assert appending.done()


async def test_the_live_table_shows_a_reading_only_once_the_journal_committed_it(pipeline: Pipeline) -> None:
    await pipeline([r(10.0, 0)])
    async with committing_slowly(pipeline, [r(20.0, 1)]):
        seen_while_committing = pipeline.latest["pump1/flow"]
    assert (seen_while_committing.value, seen_while_committing.seq) == (10.0, 0)
    assert (pipeline.latest["pump1/flow"].value, pipeline.latest["pump1/flow"].seq) == (20.0, 1)


async def test_a_point_keeps_one_reading_once_committed_and_two_only_while_a_commit_runs(pipeline: Pipeline) -> None:
    await pipeline([r(10.0, 0)])
    slot = pipeline.slots["pump1/flow"]
    assert (slot.pending, slot.reading and slot.reading.seq) == (None, 0)
    async with committing_slowly(pipeline, [r(20.0, 1)]):
        assert slot.pending is not None and slot.pending.value == 20.0  # the filter's memory meanwhile
        assert pipeline.filter([r(20.2, 1.5)]) == []  # within the deadband of the reading being committed
        (newer,) = pipeline.filter([r(30.0, 1.6)])
    assert slot.reading is not None and (slot.reading.value, slot.reading.seq) == (20.0, 1)
    assert slot.pending is newer  # accepted after the commit began: still the filter's memory


async def test_the_live_table_and_units_are_views_of_the_configured_points(pipeline: Pipeline) -> None:
    assert len(pipeline.latest) == 0 and "pump1/flow" not in pipeline.latest
    assert pipeline.latest.get("pump1/flow") is None
    await pipeline([r(1.0, 0, "pump1/speed")])
    assert list(pipeline.latest) == ["pump1/speed"] and len(pipeline.latest) == 1
    with pytest.raises(KeyError):
        pipeline.latest["pump1/flow"]
    assert dict(pipeline.units) == {"pump1/flow": "", "pump1/speed": ""}
    assert "pump9/ghost" not in pipeline.units and pipeline.units.get("pump9/ghost", "?") == "?"
    ghost = r(5.0, 0, "pump9/ghost").with_seq(7)
    pipeline.restore([ghost, r(3.0, 0).with_seq(8)])  # a point no longer configured is left out
    assert pipeline.latest["pump1/flow"].seq == 8
    assert "pump9/ghost" not in pipeline.latest
