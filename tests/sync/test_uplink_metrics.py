"""/metrics shows each uplink's link and what the far side confirmed, by the uplink's name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from avila_edge.config import parse_config
from avila_edge.core import Reading, SystemClock
from avila_edge.runtime.gateway import Gateway
from hil.mosquitto import Mosquitto, free_port

SITE = """
site: {{id: gw1}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
uplinks:
  - {{name: cloud, host: 127.0.0.1, port: {port}, plaintext: true, batch_age: 0s}}
  - {{name: spare, host: 127.0.0.1, port: {dead}, plaintext: true, reconnect_max: 1s}}   # nothing listens
"""


async def test_metrics_show_each_uplinks_link_and_the_entries_its_broker_confirmed(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config = parse_config(SITE.format(state=tmp_path, port=broker.port, dead=free_port()), filename="site.yaml")
    async with Gateway.running(config, clock=SystemClock(), plugins={}) as gateway:
        now = SystemClock().now_ns()
        await gateway.journal.append(
            [Reading(point="pump1/flow", value=float(k), ts_source=now, ts_gateway=now) for k in range(500)]
        )
        cloud = next(u for u in gateway.uplinks if u.config.name == "cloud")
        async with asyncio.timeout(20):
            while cloud.stats().entries < 500:
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.http_url}/metrics") as r:
            text = await r.text()
        stats = cloud.stats()
    m = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert m[("avila_edge_uplink_connected", (("uplink", "cloud"),))] == 1
    assert m[("avila_edge_uplink_connected", (("uplink", "spare"),))] == 0
    assert m[("avila_edge_uplink_entries_total", (("uplink", "cloud"),))] == stats.entries >= 500
    assert m[("avila_edge_uplink_bytes_total", (("uplink", "cloud"),))] == stats.bytes > 0
    assert m[("avila_edge_uplink_entries_total", (("uplink", "spare"),))] == 0
    assert m[("avila_edge_uplink_errors_total", (("uplink", "spare"),))] >= 0
