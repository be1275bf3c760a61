"""The hil OPC UA server as a separate process (``python -m hil opcua-server``) serving the example site."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import msgspec
import pytest

from avila_edge.config import load_config
from avila_edge.core import Quality
from avila_edge.driver import load_plugins
from drivers.opcua.config import OpcUaConnection

from .conftest import running

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
async def test_the_example_site_reads_every_point_from_the_hil_server_process(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil", "opcua-server", "--port", "0", "--assets", "pump1,pump2",
        "--user", "operator:example-pw", "--tick", "0.2",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            banner = (await proc.stdout.readline()).decode()
            cert_line = (await proc.stdout.readline()).decode()
        endpoint = re.search(r"(opc\.tcp://\S+)", banner)
        cert = re.search(r"server certificate: (\S+) sha256", cert_line)
        assert endpoint and cert, banner + cert_line
        (tmp_path / "pw").write_text("example-pw\n")
        (site,) = load_config(ROOT / "configs" / "example-opcua.yaml", plugins=load_plugins()).devices
        conn: OpcUaConnection = site.connection
        local = msgspec.structs.replace(
            conn,
            endpoint=endpoint.group(1),
            certificate_dir=str(tmp_path / "pki"),
            trusted_server_certificates=(cert.group(1),),
            password_file=str(tmp_path / "pw"),
        )
        device = msgspec.structs.replace(site, connection=local)
        async with running(device) as (driver, sink):
            await sink.wait_for(lambda c: len(c.latest) == len(device.points), within=30)
            await sink.wait_for(lambda c: all(r.quality is Quality.GOOD for r in c.latest.values()), within=30)
            await driver.write("pump1/speed_setpoint", 1300.0)
            await sink.wait_value("pump1/speed_setpoint", 1300.0)
        assert sink.latest["plc/server_state"].value == 0
        assert sink.latest["pump1/status_word"].value & 1 == 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await proc.wait()
    assert code == 0
