"""A running gateway subscribed to the hil OPC UA server: a stopped server is Bad with a reason in
the journal, and /status and /metrics show the link, its last success and the errors by kind; the
server serving again is Good again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from hil.opcua_server import OpcUaPlant

from ..harness import HttpHealth, http_health

SITE = """
site: {{id: opcua-site}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
assets: [{{id: pump1}}]
devices:
  - id: srv1
    driver: opcua
    connection: {{endpoint: "{endpoint}", security_mode: none, session_timeout: 10s}}
    timing: {{poll_interval: 50ms, timeout: 1s, backoff_initial: 50ms, backoff_max: 300ms}}
    points:
      - {{id: pump1/flow, address: {{node: "{node}"}}, type: float64}}
"""


async def test_a_stopped_server_shows_in_the_journal_status_and_metrics_and_recovers(tmp_path: Path) -> None:
    async with OpcUaPlant(assets=("pump1",), policies=("NoSecurity",), tick=0.05) as server:
        text = SITE.format(state=tmp_path, endpoint=server.endpoint, node=server.node_id("pump1", "flow"))
        config = parse_config(text, filename="site.yaml")
        async with Gateway.running(config, clock=SystemClock()) as gateway:

            async def until_health(connected: bool, *, success_after: int = -1) -> HttpHealth:
                """Health once the link is ``connected`` (and, if up, a value arrived after ``success_after``)."""
                async with asyncio.timeout(15):
                    while True:
                        h = await http_health(gateway.http_url, "srv1")
                        last = h.status["last_success_ns"]
                        if h.status["connected"] is connected and (not connected or (last or -1) > success_after):
                            return h
                        await asyncio.sleep(0.05)

            up = await until_health(True)
            assert up.connected == 1
            await server.stop()
            try:
                down = await until_health(False)
            finally:
                await server.start()
            mended = await until_health(True, success_after=down.status["last_success_ns"])
            async with asyncio.timeout(15):
                while True:
                    await gateway.journal.flush()
                    entries = await gateway.journal.read(0, 100_000, kinds=[EntryKind.READING])
                    flows = [e.reading() for e in entries if e.reading().point == "pump1/flow"]
                    if any(not r.good for r in flows) and flows[-1].good:
                        break
                    await asyncio.sleep(0.05)
    assert down.connected == 0
    assert down.status["errors"].get("link_down", 0) >= 1
    assert down.errors == {k: float(v) for k, v in down.status["errors"].items()}
    assert down.status["last_error"]
    assert mended.connected == 1
    bad = next(r for r in flows if not r.good)
    assert bad.reason.startswith("link down"), bad.reason
