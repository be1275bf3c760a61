"""Configuration bundles from the fleet, through the real ``avila-edge run`` process: a valid bundle is
applied by an in-process restart and survives a process restart; an invalid one is refused with
line-precise issues; one that cannot start is rolled back; a local edit takes back control."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from avila_edge.journal import decode_event
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import Mosquitto

from .conftest import GatewayProcess, free_port, status, until

pytestmark = pytest.mark.slow

SITE = """
site: {{id: e2e}}
state_dir: state
http: {{host: 127.0.0.1, port: {http}}}
logging: {{format: json, level: info}}
uplinks:
  - {{name: cloud, host: 127.0.0.1, port: {broker}, plaintext: true, fleet_key: "{key}", batch_age: 50ms}}
assets: [{{id: pump1}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {plc}}}
    timing: {{poll_interval: 100ms, timeout: 300ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32}}
{extra}"""

EXTRA_POINT = "      - {id: pump1/speed, address: {table: holding, address: 10}, type: uint16}\n"


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "avila_edge.cli", *args], capture_output=True, text=True, check=True)
    return out.stdout


def events(state: Path) -> list[tuple[str, dict[str, object]]]:
    conn = sqlite3.connect(f"file:{state / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT body FROM entry WHERE kind=1 ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(e.kind, e.attrs) for e in (decode_event(bytes(b)) for (b,) in rows)]


def publish(broker: Mosquitto, envelope: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", "avila/e2e/command",
         "-m", envelope],
        check=True,
    )  # fmt: skip


def points(base: str) -> set[str]:
    return {p["id"] for p in status(base)["points"]}


async def test_bundles_apply_roll_back_and_persist(tmp_path: Path, gateway_process: list[GatewayProcess]) -> None:
    fleet_key = cli("fleet-command", "keygen", "--out", str(tmp_path / "fleet.pem")).strip()
    http = free_port()
    base = f"http://127.0.0.1:{http}"
    state = tmp_path / "state"
    with Mosquitto() as broker:
        async with ModbusPlc() as plc:
            site = {"http": http, "broker": broker.port, "plc": plc.port, "key": fleet_key}
            config = tmp_path / "site.yaml"
            config.write_text(SITE.format(**site, extra=""))

            def sign(ident: int, text: str) -> str:
                bundle = tmp_path / f"bundle-{ident}.yaml"
                bundle.write_text(text)
                return cli("fleet-command", "sign", "--key", str(tmp_path / "fleet.pem"), "--gateway", "e2e",
                           "--id", str(ident), "--config", str(bundle)).strip()  # fmt: skip

            gw = GatewayProcess(["run", "--config", str(config)])
            gateway_process.append(gw)
            await until(lambda: points(base) == {"pump1/flow"} and status(base)["uplinks"][0]["connected"])

            # 1. a valid bundle with one more point: applied by an in-process restart
            publish(broker, sign(10, SITE.format(**site, extra=EXTRA_POINT)))
            await until(lambda: points(base) == {"pump1/flow", "pump1/speed"})
            await until(lambda: any(k == "config_applied" for k, _ in events(state)))
            await until(lambda: status(base)["uplinks"][0]["connected"])
            assert (state / "config" / "active.yaml").read_text() == SITE.format(**site, extra=EXTRA_POINT)
            assert gw.proc.poll() is None

            # 2. an invalid bundle: refused with the line of the problem; nothing changes
            broken = SITE.format(**site, extra=EXTRA_POINT).replace("poll_interval: 100ms", "poll_interval: fast")
            publish(broker, sign(11, broken))
            await until(lambda: any(k == "command_failed" for k, _ in events(state)))
            failed = next(a for k, a in events(state) if k == "command_failed")
            assert any("fleet-bundle-11.yaml:" in str(i) and "poll_interval" in str(i) for i in failed["issues"])  # type: ignore[attr-defined]

            # 3. a bundle that cannot start (its HTTP port is taken): rolled back to bundle 10
            with socket.socket() as taken:
                taken.bind(("127.0.0.1", 0))
                taken.listen()
                busy = taken.getsockname()[1]
                publish(broker, sign(12, SITE.format(**{**site, "http": busy}, extra="")))
                await until(lambda: any(k == "config_rolled_back" for k, _ in events(state)), within=30)
            await until(lambda: points(base) == {"pump1/flow", "pump1/speed"})
            rolled = next(a for k, a in events(state) if k == "config_rolled_back")
            assert rolled["id"] == 12
            assert json.loads((state / "config" / "active.json").read_text())["command_id"] == 10
            assert not (state / "config" / "candidate.yaml").exists()

            # 4. a process restart keeps running the active bundle
            assert gw.stop()[0] == 0
            gw = GatewayProcess(["run", "--config", str(config)])
            gateway_process.append(gw)
            await until(lambda: points(base) == {"pump1/flow", "pump1/speed"})
            assert gw.stop()[0] == 0

            # 5. an engineer edits the local file: it wins over the bundle
            config.write_text(SITE.format(**site, extra="").replace("100ms", "200ms"))
            gw = GatewayProcess(["run", "--config", str(config)])
            gateway_process.append(gw)
            await until(lambda: points(base) == {"pump1/flow"})
            code, _, err = gw.stop()
            assert code == 0
            assert "changed since fleet bundle 10 was applied" in err
    kinds = [k for k, _ in events(state)]
    assert kinds.count("config_staged") == 2  # 10 and 12; 11 never staged
    assert kinds.count("config_applied") == 1


async def test_a_bundle_staged_before_a_stop_is_applied_at_the_next_start(
    tmp_path: Path, gateway_process: list[GatewayProcess]
) -> None:
    from avila_edge.config import load_config
    from avila_edge.runtime.bundles import BundleStore

    http = free_port()
    base = f"http://127.0.0.1:{http}"
    state = tmp_path / "state"
    with Mosquitto() as broker:
        async with ModbusPlc() as plc:
            site = {"http": http, "broker": broker.port, "plc": plc.port, "key": "A" * 43 + "="}
            config = tmp_path / "site.yaml"
            config.write_text(SITE.format(**site, extra=""))
            # accepted (id persisted) and staged, then the power went: nothing applied yet
            BundleStore(state, config).stage(SITE.format(**site, extra=EXTRA_POINT), 21)
            gw = GatewayProcess(["run", "--config", str(config)])
            gateway_process.append(gw)
            await until(lambda: points(base) == {"pump1/flow", "pump1/speed"})
            assert gw.stop()[0] == 0
            assert load_config(config).site.id == "e2e"
    applied = [a for k, a in events(state) if k == "config_applied"]
    assert [a["id"] for a in applied] == [21]
    assert json.loads((state / "config" / "active.json").read_text())["command_id"] == 21
    assert not (state / "config" / "candidate.yaml").exists()
