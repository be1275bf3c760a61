"""A running gateway polling the hil/ PLC: a blocked inlet becomes an anomaly event in the journal and in
the twin API, through the one service block in ``Gateway.services()``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import Mosquitto

SITE = """
site: {{id: anomaly}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
asset_types: [{{id: pump}}]
assets: [{{id: pump1, type: pump}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {port}}}
    timing: {{poll_interval: 20ms, timeout: 500ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32}}
      - {{id: pump1/pressure, address: {{table: holding, address: 8}}, type: int16, scale: 0.01}}
      - {{id: pump1/current, address: {{table: holding, address: 34}}, type: float32}}
anomaly:
  detectors:
    - id: health
      asset_type: pump
      window: 100ms
      features: [{{point: flow}}, {{point: current}}, {{point: pressure}}]
      threshold: {{warmup: 8, manual: 30, raise_after: 2}}
"""


USER = {"username": "operator", "password": "pump station seven"}


def client() -> aiohttp.ClientSession:
    """Keeps the console's session cookie of an IP-address host (the gateway listens on 127.0.0.1)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    """The console's first-start setup on a new state directory, a login on one already set up."""
    token = gateway.config.state_dir / "setup-token"
    if token.exists():
        body = {"token": token.read_text().strip(), **USER}
        async with http.post(f"{gateway.http_url}/api/setup", json=body) as r:
            assert r.status == 201, await r.text()
    else:
        async with http.post(f"{gateway.http_url}/api/login", json=USER) as r:
            assert r.status == 200, await r.text()


async def test_a_blocked_inlet_reaches_the_journal_and_the_twin_api(tmp_path: Path) -> None:
    async with ModbusPlc() as plc:
        config = parse_config(SITE.format(state=tmp_path, port=plc.port), filename="site.yaml")
        async with Gateway.running(config, clock=SystemClock()) as gateway, client() as http:
            assert [name for name, _ in gateway.services()] == ["anomaly"]
            await sign_in(http, gateway)

            async def health() -> dict[str, object] | None:
                async with http.get(f"{gateway.http_url}/api/twins/pump1") as r:
                    twin = await r.json()
                    return twin.get("anomaly", {}).get("health")  # type: ignore[no-any-return]

            async with asyncio.timeout(4):
                while (h := await health()) is None or h["score"] is None:  # the baseline has learned
                    await asyncio.sleep(0.05)
            plc.plant.block_inlet(0.6)
            async with asyncio.timeout(4):
                while not (h := await health()) or h["active"] is not True:
                    await asyncio.sleep(0.05)
            await gateway.journal.flush()
            events = [e.event() for e in await gateway.journal.read(0, 100_000, kinds=[EntryKind.EVENT])]
    anomalies = [e for e in events if e.kind == "anomaly"]
    assert [(e.source, e.attrs["state"]) for e in anomalies] == [("pump1/health", "start")]
    assert anomalies[0].attrs["top"][0]["feature"] in ("flow.mean", "current.mean", "pressure.mean")


async def test_a_restarted_gateway_scores_its_first_windows_on_what_it_learned_before(tmp_path: Path) -> None:
    async with ModbusPlc() as plc:
        config = parse_config(SITE.format(state=tmp_path, port=plc.port), filename="site.yaml")

        async def health(gateway: Gateway, http: aiohttp.ClientSession) -> dict[str, object] | None:
            async with http.get(f"{gateway.http_url}/api/twins/pump1") as r:
                assert r.status == 200, await r.text()
                return (await r.json()).get("anomaly", {}).get("health")  # type: ignore[no-any-return]

        async with Gateway.running(config, clock=SystemClock()) as gateway, client() as http:
            await sign_in(http, gateway)
            async with asyncio.timeout(4):
                while (h := await health(gateway, http)) is None or h["score"] is None:  # 8 windows of warm-up
                    await asyncio.sleep(0.05)
        # stopped: the service saved what it learned (its interval is a minute: this is the shutdown save)
        async with Gateway.running(config, clock=SystemClock()) as gateway, client() as http:
            await sign_in(http, gateway)
            async with asyncio.timeout(2):
                while (restored := await health(gateway, http)) is None:
                    await asyncio.sleep(0.02)
            assert restored["score"] is not None, "the twin shows the last judgement from before the restart"
            async with asyncio.timeout(2):
                while (h := await health(gateway, http))["window_end"] == restored["window_end"]:  # type: ignore[index]
                    await asyncio.sleep(0.02)
            assert h is not None and h["score"] is not None, "the first new window is scored: no second warm-up"


async def test_an_anomaly_is_published_northbound_as_an_event_and_in_the_retained_twin_state(tmp_path: Path) -> None:
    north = "north:\n  mqtt: {{port: {broker}, reconnect_initial: 100ms, reconnect_max: 300ms}}\n"
    with Mosquitto() as broker:
        async with ModbusPlc() as plc:
            text = SITE.format(state=tmp_path, port=plc.port) + north.format(broker=broker.port)
            config = parse_config(text, filename="site.yaml")
            proc = await asyncio.create_subprocess_exec(
                "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-v", "-q", "1",
                "-t", "avila/anomaly/events/anomaly", "-t", "avila/anomaly/pump1/state",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdout is not None
            try:
                async with Gateway.running(config, clock=SystemClock()) as gateway:
                    twins = gateway.twins
                    async with asyncio.timeout(4):
                        while twins.snapshot("pump1")["anomaly"].get("health", {}).get("score") is None:  # type: ignore[attr-defined]
                            await asyncio.sleep(0.05)
                    plc.plant.block_inlet(0.6)
                    event: dict[str, Any] | None = None
                    state: dict[str, Any] | None = None
                    async with asyncio.timeout(6):
                        while event is None or state is None:
                            topic, _, payload = (await proc.stdout.readline()).decode().partition(" ")
                            body = json.loads(payload)
                            if topic.endswith("/events/anomaly"):
                                event = body
                            elif body.get("anomaly", {}).get("health", {}).get("active") is True:
                                state = body
            finally:
                proc.terminate()
                await proc.wait()
    assert event["source"] == "pump1/health" and event["attrs"]["state"] == "start"
    assert event["attrs"]["top"][0]["feature"] in ("flow.mean", "current.mean", "pressure.mean")
    assert isinstance(event["seq"], int), "followed from the journal"
    assert state["anomaly"]["health"]["since"] == event["attrs"]["window_end"]
