"""The InfluxDB v2 sink against a real VictoriaMetrics: mapping, resume, no duplicates, outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from avila_edge.config.model import AssetConfig, GatewayConfig, JournalConfig, SiteConfig
from avila_edge.config.sync import InfluxSinkConfig
from avila_edge.core import GatewayError, Quality, Reading, SystemClock
from avila_edge.journal import Journal
from avila_edge.sync.influx_sink import InfluxSink
from avila_edge.sync.lineprotocol import to_line
from hil.victoria import VictoriaMetrics

GATEWAY = GatewayConfig(site=SiteConfig(id="plant-a"), assets=(AssetConfig(id="pump1", type="pump"),))
T0 = 1_760_000_000 * 10**9  # October 2025: VictoriaMetrics refuses samples from the future


@pytest.fixture(scope="module")
def vm() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as v:
        yield v


def sink_config(vm: VictoriaMetrics, name: str) -> InfluxSinkConfig:
    return msgspec.convert({"url": vm.url, "bucket": "b", "name": name}, InfluxSinkConfig)


@contextlib.asynccontextmanager
async def sinking(journal: Journal, config: InfluxSinkConfig) -> AsyncIterator[InfluxSink]:
    sink = InfluxSink(config, GATEWAY, journal=journal, clock=SystemClock())
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sink.run())
        try:
            yield sink
        finally:
            task.cancel()


def test_line_protocol_maps_the_twin_model_and_escapes() -> None:
    r = Reading(point="pump 1/flow,x", value=1.5, ts_source=7, ts_gateway=8)
    line = to_line(r, site="a=b", measurements={"pump 1": "centrifugal pump"})
    assert line == r"centrifugal\ pump,site=a\=b,asset=pump\ 1,point=flow\,x value=1.5,quality=0i 7"
    bad = Reading(point="p/x", value=3.0, quality=Quality.BAD, reason="timeout", ts_source=1, ts_gateway=1)
    assert to_line(bad, site="s", measurements={}) == "reading,site=s,asset=p,point=x quality=2i 1"


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    cfg = msgspec.convert({"url": "http://tsdb.example.com:8086", "bucket": "b"}, InfluxSinkConfig)
    with pytest.raises(GatewayError, match="not https"):
        InfluxSink(cfg, GATEWAY, journal=None, clock=SystemClock())  # type: ignore[arg-type]


async def test_every_reading_lands_once_even_when_resent(tmp_path: Path, vm: VictoriaMetrics) -> None:
    readings = [
        Reading(point=f"pump1/r{i % 3}", value=float(i), ts_source=T0 + i * 10**9, ts_gateway=T0 + i * 10**9)
        for i in range(600)
    ]
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings)
        config = sink_config(vm, "once")
        async with sinking(journal, config) as sink:
            async with asyncio.timeout(20):
                while sink.stats().written < 600:
                    await asyncio.sleep(0.05)
        # a crash before the cursor moved makes the sink send the same range again
        cursor = await journal.cursor("sink:again")
        assert cursor.position == 0
        async with sinking(journal, sink_config(vm, "again")) as sink:
            async with asyncio.timeout(20):
                while sink.stats().written < 600:
                    await asyncio.sleep(0.05)
    series = vm.export('{__name__="pump_value"}')
    samples = sorted(v for s in series for v in s["values"])
    assert samples == [float(i) for i in range(600)]


async def test_an_unreachable_tsdb_holds_the_cursor_and_recovers(tmp_path: Path) -> None:
    vm = VictoriaMetrics()
    config = msgspec.convert({"url": vm.url, "bucket": "b", "timeout": 1.0}, InfluxSinkConfig)
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append([Reading(point="pump1/x", value=1.0, ts_source=T0, ts_gateway=T0)])
        async with sinking(journal, config) as sink:
            await asyncio.sleep(1.5)
            assert sink.stats().errors >= 1
            assert (await journal.cursor("sink:tsdb")).position == 0
            await asyncio.to_thread(vm.start)
            try:
                async with asyncio.timeout(30):
                    while sink.stats().written < 1:
                        await asyncio.sleep(0.1)
            finally:
                vm.__exit__(None, None, None)
