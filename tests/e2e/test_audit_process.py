"""A gateway run leaves a signed, verifiable audit log: ``avila-edge audit`` checks it from outside."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from hil.modbus_plc import ModbusPlc

from .conftest import GatewayProcess, free_port, status, until, write_site


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "avila_edge.cli", "audit", *args], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip


async def test_a_stopped_gateway_leaves_a_log_that_verifies_and_proves_readings(
    tmp_path: Path, gateway_process: list[GatewayProcess]
) -> None:
    http = free_port()
    async with ModbusPlc() as plc:
        config = write_site(tmp_path, plc.port, http)
        g = GatewayProcess(["run", "--config", str(config)])
        gateway_process.append(g)
        base = f"http://127.0.0.1:{http}"
        await until(lambda: status(base)["journal"]["next_seq"] > 20)
        shown = status(base)["audit"]
        assert shown["origin"] == "avila-edge/e2e"
        code, _, err = await asyncio.to_thread(g.stop)
    assert code == 0, err
    state = tmp_path / "state"
    verified = audit("verify", "--state-dir", str(state))
    assert verified.returncode == 0, verified.stderr
    proof = audit("prove", "--seq", "3", "--state-dir", str(state))
    assert proof.returncode == 0, proof.stderr
    body = json.loads(proof.stdout)
    assert body["leaf_index"] == 3
    assert body["checkpoint"].startswith("avila-edge/e2e\n")
    # tampering with a committed reading is caught and named
    import sqlite3

    db = sqlite3.connect(state / "journal.sqlite3")
    db.execute("UPDATE entry SET body = replace(body, 'good', 'bad ') WHERE seq = 5")
    db.commit()
    db.close()
    tampered = audit("verify", "--state-dir", str(state))
    assert tampered.returncode == 1
    assert "5" in tampered.stderr + tampered.stdout
