"""A running gateway with twins, against the hil/ PLC: alarms on a plant fault, the twin API, replay API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from hil.modbus_plc import ModbusPlc

from ..web.site import admin_token, bearer

SITE = """
site: {{id: twins}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
asset_types:
  - id: pump
    derived: {{power: flow * pressure / 36}}
    alarms:
      - {{id: hot, value: motor_temperature, kind: high, limit: {limit}, hysteresis: 0.5, delay: 0.3}}
assets: [{{id: pump1, type: pump}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {port}}}
    timing: {{poll_interval: 100ms, timeout: 500ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32}}
      - {{id: pump1/pressure, address: {{table: holding, address: 8}}, type: int16, scale: 0.01}}
      - {{id: pump1/motor_temperature, address: {{table: holding, address: 9}}, type: int16, scale: 0.1}}
"""


async def test_a_plant_fault_raises_an_alarm_that_is_journaled_and_the_apis_show_it(tmp_path: Path) -> None:
    async with ModbusPlc() as plc:
        started = datetime.now(UTC)
        config = parse_config(SITE.format(state=tmp_path, port=plc.port, limit=60), filename="site.yaml")
        async with (
            Gateway.running(config, clock=SystemClock()) as gateway,
            aiohttp.ClientSession(headers=bearer(await admin_token(gateway))) as http,
        ):
            base = gateway.http_url

            async def twin() -> dict[str, object]:
                async with http.get(f"{base}/api/twins/pump1") as r:
                    assert r.status == 200
                    result: dict[str, object] = await r.json()
                    return result

            async with asyncio.timeout(15):
                while "power" not in (await twin())["derived"]:  # type: ignore[operator]
                    await asyncio.sleep(0.1)
            plc.plant.stick_sensor("motor_temperature", 95.0)  # the motor reads hot
            async with asyncio.timeout(15):
                while (await twin())["alarms"]["hot"]["state"] != "active":  # type: ignore[index]
                    await asyncio.sleep(0.1)
            plc.plant.clear_faults()  # the sensor reads the real temperature again: the alarm clears
            async with asyncio.timeout(15):
                while (await twin())["alarms"]["hot"]["state"] != "cleared_unacknowledged":  # type: ignore[index]
                    await asyncio.sleep(0.1)
            events = [e.event() for e in await gateway.journal.read(0, 100_000, kinds=[EntryKind.EVENT])]
            transitions = [(e.source, e.attrs["transition"]) for e in events if e.kind == "alarm"]
            assert transitions == [("pump1/hot", "raised"), ("pump1/hot", "cleared")]
            ended = datetime.now(UTC)
            variant = SITE.format(state=tmp_path, port=plc.port, limit=200)
            body = {"variant": variant, "from": started.isoformat(), "to": ended.isoformat()}
            async with http.post(f"{base}/api/replay", data=json.dumps(body)) as r:
                assert r.status == 200
                report = await r.json()
            assert report["readings"] > 0
            assert any(c["alarm"] == "pump1/hot" for c in report["only_as_configured"])
            async with http.post(f"{base}/api/replay", data=json.dumps({**body, "variant": "site: {id: [x"})) as r:
                assert r.status == 400
                assert (await r.json())["issues"][0].startswith("variant.yaml:1:")
