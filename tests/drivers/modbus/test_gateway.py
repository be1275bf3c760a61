"""A running gateway polling the hil PLC over Modbus TCP through a fault proxy: the pulled cable is
Bad with a reason in the journal, and /status and /metrics show the link, its last success and the
errors by kind; the mended cable is Good again."""

from __future__ import annotations

from pathlib import Path

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.runtime.gateway import Gateway
from hil.fault_proxy import FaultProxy
from hil.modbus_plc import ModbusPlc

from ..harness import until_bad_then_good, until_health

SITE = """
site: {{id: modbus-site}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
assets: [{{id: pump1}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {port}}}
    timing: {{poll_interval: 50ms, timeout: 300ms, backoff_initial: 50ms, backoff_max: 200ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32}}
"""


async def test_a_pulled_cable_shows_in_the_journal_status_and_metrics_and_mends(tmp_path: Path) -> None:
    async with ModbusPlc() as plc, FaultProxy("127.0.0.1", plc.port) as proxy:
        config = parse_config(SITE.format(state=tmp_path, port=proxy.port), filename="site.yaml")
        async with Gateway.running(config, clock=SystemClock()) as gateway:
            up = await until_health(gateway.http_url, "plc1", True)
            assert up.connected == 1
            await proxy.drop()
            down = await until_health(gateway.http_url, "plc1", False)
            await proxy.restore()
            mended = await until_health(gateway.http_url, "plc1", True, success_after=down.status["last_success_ns"])
            flows = await until_bad_then_good(gateway.journal, "pump1/flow")
    assert down.connected == 0
    assert down.status["errors"].get("link_down", 0) >= 1
    assert down.errors == {k: float(v) for k, v in down.status["errors"].items()}
    assert "plc1" in down.status["last_error"]
    assert mended.connected == 1
    assert mended.status["last_success_ns"] > down.status["last_success_ns"]
    bad = next(r for r in flows if not r.good)
    assert bad.reason.startswith(("link down", "timeout")), bad.reason
    assert bad.value is not None  # the last good value travels with the Bad reading
