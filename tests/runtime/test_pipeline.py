"""The pipeline between drivers and the journal: filtering, refusal, heartbeat, twins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avila_edge.config.model import AssetConfig, DeviceConfig, GatewayConfig, JournalConfig, PointConfig, SiteConfig
from avila_edge.core import JournalError, Quality, Reading, SystemClock
from avila_edge.journal import Journal
from avila_edge.runtime.pipeline import HEARTBEAT, Pipeline
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
                PointConfig(id="pump1/state", address=None, type="string"),  # type: ignore[arg-type]
            ),
        ),
    ),
)


def r(
    value: object, t: float = 0.0, point: str = "pump1/flow", quality: Quality = Quality.GOOD, reason: str = ""
) -> Reading:
    ns = int(t * 1e9)
    return Reading(point=point, value=value, quality=quality, reason=reason, ts_source=ns, ts_gateway=ns)  # type: ignore[arg-type]


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        yield Pipeline(CONFIG, journal, TwinService(CONFIG))


async def values(p: Pipeline) -> list[object]:
    return [e.reading().value for e in await p.journal.read(0, 1000)]


async def test_deadband_filters_small_moves_from_the_last_accepted_value(pipeline: Pipeline) -> None:
    await pipeline([r(10.0), r(10.3, 1), r(10.4, 2), r(10.6, 3), r(10.2, 4)])
    assert await values(pipeline) == [10.0, 10.6]
    assert pipeline.counters.filtered == 3


async def test_quality_changes_always_pass_and_repeated_bad_is_filtered(pipeline: Pipeline) -> None:
    bad = [r(None, t, quality=Quality.BAD, reason="timeout") for t in (1, 2, 3)]
    await pipeline([r(10.0), *bad, r(10.1, 4)])
    qualities = [e.reading().quality for e in await pipeline.journal.read(0, 100)]
    assert qualities == [Quality.GOOD, Quality.BAD, Quality.GOOD]


async def test_unchanged_values_are_journaled_again_at_the_heartbeat(pipeline: Pipeline) -> None:
    await pipeline([r("run", 0, "pump1/state"), r("run", 1, "pump1/state"), r("run", HEARTBEAT + 1, "pump1/state")])
    assert await values(pipeline) == ["run", "run"]


async def test_unknown_points_are_refused_and_counted_and_the_rest_accepted(pipeline: Pipeline) -> None:
    await pipeline([r(1.0, point="pump9/x"), r(2.0)])
    assert await values(pipeline) == [2.0]
    assert pipeline.counters.rejected == 1


async def test_non_finite_values_become_bad_readings(pipeline: Pipeline) -> None:
    await pipeline([r(float("nan"))])
    (entry,) = await pipeline.journal.read(0, 10)
    reading = entry.reading()
    assert reading.quality is Quality.BAD
    assert reading.reason == "device sent nan"


async def test_a_failed_append_leaves_the_filter_state_as_it_was(pipeline: Pipeline) -> None:
    await pipeline([r(10.0)])

    def refuse(conn: object, entries: object) -> None:
        raise RuntimeError("disk full")

    pipeline.journal._writer_store().hooks.append(refuse)
    with pytest.raises(JournalError):
        await pipeline([r(20.0, 1)])
    pipeline.journal._writer_store().hooks.clear()
    await pipeline([r(20.0, 2)])  # not filtered as a repeat of the value that never committed
    assert await values(pipeline) == [10.0, 20.0]
    assert pipeline.latest["pump1/flow"].seq == 1
