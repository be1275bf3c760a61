"""A running gateway with an NMEA instrument on a pty: readings are journaled, a pulled cable is
journaled as Bad and the restored one as Good again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import drivers.serial
from avila_edge.config import parse_config
from avila_edge.core import Quality, Reading, SystemClock
from avila_edge.driver import load_plugins
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from hil.pty import PtyPair
from hil.serial_instrument import SerialInstrument

from ..harness import http_health

SITE = """
site: {{id: serial-site}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
assets: [{{id: gps}}, {{id: pump1}}]
devices:
  - id: gps1
    driver: serial
    connection: {{port: "{port}", baudrate: 4800, framing: nmea, idle_timeout: 500ms}}
    timing: {{timeout: 500ms, backoff_initial: 100ms, backoff_max: 200ms}}
    points:
      - {{id: gps/lat, type: float64, address: {{sentence: GGA, field: latitude}}}}
      - {{id: pump1/water_temperature, address: {{sentence: MTW, field: temperature}}}}
"""


async def test_nmea_readings_and_a_cable_cut_are_journaled(tmp_path: Path) -> None:
    plugins = {**load_plugins(), "serial": drivers.serial.plugin}
    async with PtyPair() as pair:
        config = parse_config(SITE.format(state=tmp_path, port=pair.device), filename="site.yaml", plugins=plugins)
        async with (
            SerialInstrument(pair.instrument, interval=0.05) as inst,
            asyncio.TaskGroup() as tg,
            Gateway.running(config, clock=SystemClock(), plugins=plugins) as gateway,
        ):
            ticker = tg.create_task(inst.run())
            try:

                async def until(predicate: Callable[[list[Reading]], bool]) -> list[Reading]:
                    async with asyncio.timeout(4):
                        while True:
                            await gateway.journal.flush()
                            entries = await gateway.journal.read(0, 100_000, kinds=[EntryKind.READING])
                            readings = [e.reading() for e in entries]
                            if predicate(readings):
                                return readings
                            await asyncio.sleep(0.05)

                readings = await until(
                    lambda rs: {"gps/lat", "pump1/water_temperature"} <= {r.point for r in rs if r.good}
                )
                water = next(r for r in readings if r.point == "pump1/water_temperature" and r.good)
                assert (water.value, water.seq is not None) == (17.0, True)

                await asyncio.to_thread(pair.cut)
                await until(lambda rs: rs[-1].point in ("gps/lat", "pump1/water_temperature") and not rs[-1].good)
                await asyncio.sleep(0.2)
                await asyncio.to_thread(pair.restore)
                readings = await until(
                    lambda rs: any(
                        r.point == "gps/lat"
                        and r.quality is Quality.BAD
                        and any(g.point == "gps/lat" and g.good and (g.seq or 0) > (r.seq or 0) for g in rs)
                        for r in rs
                    )
                )
                bad = [r for r in readings if r.point == "gps/lat" and r.quality is Quality.BAD]
                assert "LinkDown" in bad[0].reason and "gps1" in bad[0].reason
                (health,) = [s.driver.health() for s in gateway.supervisors]
                assert health.connected
                assert health.errors.get("link_down", 0) >= 1
                served = await http_health(gateway.http_url, "gps1")
                good_after = max(r.ts_gateway for r in readings if r.point == "gps/lat" and r.good)
                # what an operator sees: connected again, the last success and the cut counted by kind
                assert served.status["connected"] is True and served.connected == 1
                assert served.status["last_success_ns"] >= good_after
                assert served.status["errors"]["link_down"] >= 1 and served.errors["link_down"] >= 1
                assert "gps1" in served.status["last_error"] or "gps1" in served.status["last_failure"]
            finally:
                ticker.cancel()
