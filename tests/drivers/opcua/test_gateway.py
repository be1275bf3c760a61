"""A running gateway subscribed to the hil OPC UA server: a stopped server is Bad with a reason in
the journal, and /status and /metrics show the link, its last success and the errors by kind; the
server serving again is Good again."""

from __future__ import annotations

from pathlib import Path

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.runtime.gateway import Gateway
from hil.opcua_server import OpcUaPlant

from ..harness import until_bad_then_good, until_health

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
            up = await until_health(gateway.http_url, "srv1", True, within=15)
            assert up.connected == 1
            await server.stop()
            try:
                down = await until_health(gateway.http_url, "srv1", False, within=15)
            finally:
                await server.start()
            mended = await until_health(
                gateway.http_url, "srv1", True, success_after=down.status["last_success_ns"], within=15
            )
            flows = await until_bad_then_good(gateway.journal, "pump1/flow", within=15)
    assert down.connected == 0
    assert down.status["errors"].get("link_down", 0) >= 1
    assert down.errors == {k: float(v) for k, v in down.status["errors"].items()}
    assert down.status["last_error"]
    assert mended.connected == 1
    bad = next(r for r in flows if not r.good)
    assert bad.reason.startswith("link down"), bad.reason
