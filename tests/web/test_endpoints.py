"""/status, /metrics and /healthz of an in-process gateway, read over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

import avila_edge
from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock, SystemClock
from avila_edge.driver import Driver, DriverPlugin, ReadingSink
from avila_edge.runtime.gateway import Gateway

from ..runtime.counting_driver import NoSettings, counting_device, counting_plugins, counting_site

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def until(predicate: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not await predicate():
            await asyncio.sleep(0.05)


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def scrape(http: aiohttp.ClientSession, base: str) -> Samples:
    async with http.get(f"{base}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def accepted_at_least(gateway: Gateway, n: int) -> None:
    async def enough() -> bool:
        return gateway.pipeline.counters.accepted >= n

    await until(enough)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def two_devices(state_dir: Path) -> Any:
    """``dev1`` counts on pump1/flow; ``dev2`` is disabled, so pump1/pressure is configured but never read."""
    return counting_site(
        state_dir, counting_device("dev1", "pump1/flow"), counting_device("dev2", "pump1/pressure", enabled=False)
    )


async def test_status_shows_every_configured_point_with_its_latest_committed_reading(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    plugins = counting_plugins(limit=3)  # 0, 1, 2 and then quiet, so no append is in flight when we look
    async with Gateway.running(two_devices(tmp_path), clock=SystemClock(), plugins=plugins) as gateway:
        await accepted_at_least(gateway, 3)
        status = await get_json(http, f"{gateway.http_url}/status")
    assert status["site"]["id"] == "inproc"
    assert status["version"] == avila_edge.__version__
    assert status["uptime_seconds"] >= 0
    points = {p["id"]: p for p in status["points"]}
    assert list(points) == ["pump1/flow", "pump1/pressure"]
    flow = points["pump1/flow"]
    assert (flow["unit"], flow["quality"], flow["reason"]) == ("m3/h", "good", "")
    assert flow["value"] == 2.0
    assert flow["seq"] == status["journal"]["next_seq"] - 1
    assert flow["ts_gateway"] >= flow["ts_source"] > 0
    never = points["pump1/pressure"]
    assert (never["value"], never["quality"], never["seq"], never["ts_gateway"]) == (None, "none", None, None)
    assert set(status["journal"]) >= {"first_seq", "next_seq", "entries", "bytes", "dropped", "gaps"}
    (driver,) = status["drivers"]  # the disabled device is not started
    assert (driver["device"], driver["driver"], driver["connected"], driver["restarts"]) == (
        "dev1",
        "counting",
        True,
        0,
    )
    assert status["pipeline"]["accepted"] == 3
    assert status["pipeline"]["rejected"] == 0
    assert status["north"] == {}  # no northbound endpoint configured


async def test_metrics_read_pipeline_journal_cursor_driver_and_quality_state_at_scrape_time(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with Gateway.running(two_devices(tmp_path), clock=SystemClock(), plugins=counting_plugins()) as gateway:
        await accepted_at_least(gateway, 3)
        await gateway.journal.cursor("uplink-test")  # a consumer that has not shipped anything yet
        await accepted_at_least(gateway, gateway.pipeline.counters.accepted + 2)
        m = await scrape(http, gateway.http_url)
        later = await scrape(http, gateway.http_url)
        next_seq = gateway.journal.next_seq
    assert m[("avila_edge_readings_accepted_total", ())] >= 5
    assert m[("avila_edge_readings_filtered_total", ())] == 0
    assert m[("avila_edge_readings_rejected_total", ())] == 0
    assert 0 < m[("avila_edge_journal_next_seq", ())] <= next_seq
    assert m[("avila_edge_journal_bytes", ())] > 0
    assert m[("avila_edge_journal_dropped_total", ())] == 0
    assert m[("avila_edge_cursor_lag", (("cursor", "uplink-test"),))] >= 2
    assert m[("avila_edge_driver_connected", (("device", "dev1"),))] == 1
    assert ("avila_edge_poll_duration_seconds", (("device", "dev1"),)) in m
    assert m[("avila_edge_driver_restarts_total", (("device", "dev1"),))] == 0
    assert 0 < time.time() - m[("avila_edge_driver_last_success_timestamp_seconds", (("device", "dev1"),))] < 60
    assert m[("avila_edge_points", (("quality", "good"),))] == 1
    assert m[("avila_edge_points", (("quality", "none"),))] == 1
    assert m[("avila_edge_alarms_active", ())] == 0
    assert not any(name.startswith("avila_edge_north_") for name, _ in m)  # none configured: no north families
    assert later[("avila_edge_journal_next_seq", ())] >= m[("avila_edge_journal_next_seq", ())]


async def test_openmetrics_is_served_when_the_scraper_asks_for_it(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with Gateway.running(counting_site(tmp_path), clock=SystemClock(), plugins=counting_plugins()) as gateway:
        await accepted_at_least(gateway, 1)
        headers = {"Accept": "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"}
        async with http.get(f"{gateway.http_url}/metrics", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            text = await r.text()
    assert "# TYPE avila_edge_readings_accepted counter" in text
    assert text.endswith("# EOF\n")


async def test_two_gateways_in_one_process_keep_separate_metrics_and_leave_the_global_registry_alone(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    one = counting_site(tmp_path / "one", site="one")
    two = counting_site(
        tmp_path / "two", two_devices(tmp_path).devices[1], counting_device("dev3", "pump1/a", "pump1/b")
    )
    async with (
        Gateway.running(one, clock=SystemClock(), plugins=counting_plugins()) as a,
        Gateway.running(two, clock=SystemClock(), plugins=counting_plugins()) as b,
    ):
        await accepted_at_least(a, 1)
        await accepted_at_least(b, 2)
        ma, mb = await scrape(http, a.http_url), await scrape(http, b.http_url)
    assert a.http_url != b.http_url
    assert ma[("avila_edge_points", (("quality", "good"),))] == 1
    assert mb[("avila_edge_points", (("quality", "good"),))] == 2
    assert ("avila_edge_driver_connected", (("device", "dev3"),)) not in ma
    assert ("avila_edge_driver_connected", (("device", "dev1"),)) not in mb
    assert b"avila_edge" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


async def test_healthz_is_ok_while_the_gateway_runs(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with Gateway.running(counting_site(tmp_path), clock=SystemClock(), plugins=counting_plugins()) as gateway:
        async with http.get(f"{gateway.http_url}/healthz") as r:
            assert r.status == 200
            assert await r.json() == {"status": "ok", "problems": []}


class Crashing(Driver):
    async def run(self, sink: ReadingSink) -> None:
        raise RuntimeError("register map out of date")


async def test_a_crashing_driver_shows_restarts_and_bad_points_while_the_others_stay_good(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    def create(device: DeviceConfig, clock: Clock) -> Driver:
        return Crashing(device, clock=clock)

    plugins = {**counting_plugins(), "crashing": DriverPlugin("crashing", NoSettings, NoSettings, create)}
    broken = DeviceConfig(
        id="plc9", driver="crashing", connection=None, points=counting_device("x", "pump1/temp").points
    )
    config = counting_site(tmp_path, counting_device("dev1", "pump1/flow"), broken)
    async with Gateway.running(config, clock=SystemClock(), plugins=plugins) as gateway:

        async def restarted_twice() -> bool:
            return gateway.supervisors[1].restarts >= 2

        await until(restarted_twice)
        status = await get_json(http, f"{gateway.http_url}/status")
        m = await scrape(http, gateway.http_url)
    points = {p["id"]: p for p in status["points"]}
    assert points["pump1/flow"]["quality"] == "good"
    assert points["pump1/temp"]["quality"] == "bad"
    assert points["pump1/temp"]["reason"] == "driver restarting: RuntimeError: register map out of date"
    drivers = {d["device"]: d for d in status["drivers"]}
    assert drivers["plc9"]["restarts"] >= 2
    assert drivers["plc9"]["last_failure"] == "RuntimeError: register map out of date"
    assert drivers["dev1"]["restarts"] == 0
    assert m[("avila_edge_driver_restarts_total", (("device", "plc9"),))] >= 2
    assert m[("avila_edge_driver_connected", (("device", "plc9"),))] == 0
    assert m[("avila_edge_points", (("quality", "bad"),))] == 1
