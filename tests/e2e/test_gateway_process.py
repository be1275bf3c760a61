"""``avila-edge run`` as a real process against the hil/ PLC: status, metrics, link loss, SIGTERM, systemd."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

from hil.modbus_plc import ModbusPlc

from .conftest import GatewayProcess, free_port, get, status, until, write_site


async def test_status_metrics_link_loss_recovery_and_graceful_stop(
    tmp_path: Path, gateway_process: list[GatewayProcess]
) -> None:
    http = free_port()
    base = f"http://127.0.0.1:{http}"
    async with ModbusPlc() as plc:
        config = write_site(tmp_path, plc.port, http)
        g = GatewayProcess(["run", "--config", str(config)])
        gateway_process.append(g)

        def flow_quality(q: str) -> bool:
            points = {p["id"]: p for p in status(base)["points"]}
            return bool(points["pump1/flow"]["quality"] == q)

        await until(lambda: flow_quality("good"))
        code, metrics = get(base + "/metrics")
        assert code == 200
        for name in (b"avila_edge_readings_accepted_total", b"avila_edge_journal_next_seq", b"avila_edge_cursor_lag",
                     b"avila_edge_driver_connected", b"avila_edge_poll_duration_seconds"):  # fmt: skip
            assert name in metrics
        assert get(base + "/healthz")[0] == 200

        await plc.drop_link()
        loop = asyncio.get_running_loop()
        dropped = loop.time()
        await until(lambda: flow_quality("bad"))
        assert loop.time() - dropped < 2 * 0.2 + 1.5  # two poll intervals, plus process and HTTP slack
        drivers = status(base)["drivers"]
        assert drivers[0]["errors"].get("link_down", 0) >= 1
        await plc.restore_link()
        await until(lambda: flow_quality("good"))
        seen_seq = status(base)["journal"]["next_seq"]
        code, _out, err = await asyncio.to_thread(g.stop)
    assert code == 0, err
    assert "gateway e2e stopped" in err
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite3")
    seqs = [s for (s,) in db.execute("SELECT seq FROM entry ORDER BY seq")]
    db.close()
    assert seqs == list(range(len(seqs)))
    assert len(seqs) >= seen_seq


async def test_systemd_sees_ready_watchdog_and_stopping(tmp_path: Path, gateway_process: list[GatewayProcess]) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    messages: list[str] = []
    async with ModbusPlc() as plc:
        config = write_site(tmp_path, plc.port, free_port())
        g = GatewayProcess(
            ["run", "--config", str(config)], env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
        )
        gateway_process.append(g)

        def received(word: str) -> bool:
            while True:
                try:
                    messages.append(sock.recv(4096).decode())
                except BlockingIOError:
                    break
            return any(word in m for m in messages)

        await until(lambda: received("READY=1"))
        await until(lambda: received("WATCHDOG=1"))
        code, _, err = await asyncio.to_thread(g.stop)
        await until(lambda: received("STOPPING=1"))
    sock.close()
    assert code == 0, err
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=2 points, " in ready


async def test_demo_comes_up_with_good_pump_values_and_stops(
    tmp_path: Path, gateway_process: list[GatewayProcess]
) -> None:
    http = free_port()
    g = GatewayProcess(["demo", "--state-dir", str(tmp_path / "demo"), "--http-port", str(http)])
    gateway_process.append(g)
    base = f"http://127.0.0.1:{http}"

    def pumps_good() -> bool:
        points = {p["id"]: p for p in status(base)["points"]}
        return all(
            points[f"{pump}/{name}"]["quality"] == "good"
            for pump in ("pump1", "pump2", "pump3")  # over Modbus TCP, OPC UA and MQTT
            for name in ("flow", "pressure", "vibration")
        )

    await until(pumps_good, within=30)
    points = {p["id"]: p for p in status(base)["points"]}
    for pump in ("pump1", "pump2", "pump3"):
        assert 100 < points[f"{pump}/flow"]["value"] < 140
    assert {d["driver"] for d in status(base)["drivers"] if d["connected"]} == {"modbus", "opcua", "mqtt"}
    code, out, err = await asyncio.to_thread(g.stop)
    assert code == 0, err
    assert f"avila-edge demo: status at {base}/status" in out
