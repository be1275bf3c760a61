"""A running gateway with both CoAP modes: an observed hil node and SenML packs POSTed by libcoap end
up committed in the journal; the node's restart is journaled as Bad and then Good again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import drivers.coap
from avila_edge.config import parse_config
from avila_edge.core import Quality, Reading, SystemClock
from avila_edge.driver import load_plugins
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from hil.coap_nodes import CoapNode, free_udp_port

from ..harness import http_health
from .conftest import coap_client

SITE = """
site: {{id: coap-site}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
assets: [{{id: pump1}}, {{id: pump2}}]
devices:
  - id: pump1-node
    driver: coap
    connection: {{host: 127.0.0.1, port: {node_port}, max_silence: 300ms}}
    timing: {{timeout: 500ms, backoff_initial: 50ms, backoff_max: 200ms}}
    points:
      - {{id: pump1/motor_temperature, address: {{path: /temp}}, type: float64}}
      - {{id: pump1/flow, address: {{path: /senml, name: "urn:dev:pump1:flow"}}, type: float64}}
  - id: ingest
    driver: coap
    connection:
      mode: server
      port: {ingest_port}
      names: {{"urn:dev:pump2:flow": pump2/flow}}
    points:
      - {{id: pump2/flow, address: {{}}, type: float64}}
"""


async def test_both_modes_feed_the_journal_of_a_running_gateway(tmp_path: Path) -> None:
    ingest_port = free_udp_port()
    plugins = {**load_plugins(), "coap": drivers.coap.plugin}
    async with CoapNode(interval=0.05) as node:
        text = SITE.format(state=tmp_path, node_port=node.port, ingest_port=ingest_port)
        config = parse_config(text, filename="site.yaml", plugins=plugins)
        async with Gateway.running(config, clock=SystemClock(), plugins=plugins) as gateway:

            async def journaled() -> list[Reading]:
                await gateway.journal.flush()
                entries = await gateway.journal.read(0, 100_000, kinds=[EntryKind.READING])
                return [e.reading() for e in entries]

            async def until(predicate: object) -> list[Reading]:
                async with asyncio.timeout(5):
                    while True:
                        readings = await journaled()
                        if predicate(readings):  # type: ignore[operator]
                            return readings
                        await asyncio.sleep(0.05)

            await until(lambda rs: {"pump1/motor_temperature", "pump1/flow"} <= {r.point for r in rs if r.good})
            pack = json.dumps([{"bn": "urn:dev:pump2:", "bt": 1_700_000_000, "n": "flow", "v": 42.5}])
            code, _, err = await coap_client(
                "-m", "post", "-t", "110", "-e", pack, f"coap://127.0.0.1:{ingest_port}/senml"
            )
            assert (code, err) == (0, "")
            readings = await until(lambda rs: any(r.point == "pump2/flow" for r in rs))
            (flow2,) = [r for r in readings if r.point == "pump2/flow"]
            assert (flow2.value, flow2.ts_source, flow2.seq is not None) == (42.5, 1_700_000_000 * 10**9, True)

            await node.restart(down_for=0.1)
            bad_then_good = await until(
                lambda rs: any(
                    r.point == "pump1/flow"
                    and r.quality is Quality.BAD
                    and any(g.point == "pump1/flow" and g.good and (g.seq or 0) > (r.seq or 0) for g in rs)
                    for r in rs
                )
            )
            bad = [r for r in bad_then_good if r.point == "pump1/flow" and r.quality is Quality.BAD]
            assert "no notification for 0.3 s" in bad[0].reason
            health = {s.driver.device.id: s.driver.health() for s in gateway.supervisors}
            assert health["ingest"].connected
            errors = health["pump1-node"].errors
            assert errors["timeout"] == 2  # /temp and /senml each lost once
            assert set(errors) <= {"timeout", "link_down"}  # link_down: a retry while the node was still down
            assert all(s.restarts == 0 for s in gateway.supervisors)
            async with asyncio.timeout(5):  # every resource observed again, not just /flow
                while not (node_health := await http_health(gateway.http_url, "pump1-node")).status["connected"]:
                    await asyncio.sleep(0.05)
            ingest_health = await http_health(gateway.http_url, "ingest")
    # what an operator sees of both: connected, the last success and the errors by kind
    assert node_health.status["connected"] is True and node_health.connected == 1
    assert node_health.status["last_success_ns"] >= flow2.ts_gateway
    assert node_health.status["errors"]["timeout"] == 2 and node_health.errors["timeout"] == 2
    assert node_health.status["last_error"]
    assert ingest_health.status["connected"] is True and ingest_health.connected == 1
    assert ingest_health.status["last_success_ns"] >= flow2.ts_gateway
