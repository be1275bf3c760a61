"""``python -m hil modbus-plc --rtu pty`` serves units over RTU on the pty it prints, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from avila_edge.core import Quality, SystemClock
from drivers.modbus.driver import ModbusDriver

from .conftest import Collector, point
from .test_rtu import rtu_device

ROOT = Path(__file__).resolve().parents[3]


async def test_the_subcommand_serves_rtu_units_on_the_pty_it_prints() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil", "modbus-plc", "--rtu", "pty", "--baudrate", "115200", "--parity", "N",
        "--unit-ids", "1,2", "--silent-units", "3",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        m = re.search(r"open (\S+) from the gateway", first)
        assert m, first
        pts = [
            point("pump2/name", "holding", 28, "string", length=4, unit_id=2),
            point("pump3/name", "holding", 28, "string", length=4, unit_id=3),
        ]
        sink = Collector()
        async with ModbusDriver(rtu_device("plc", m.group(1), pts), clock=SystemClock()) as driver:
            task = asyncio.create_task(driver.run(sink))
            try:
                await sink.wait_for(lambda latest: len(latest) == 2 and "pump2/name" in latest, within=3)
                await sink.wait_for(lambda latest: latest["pump2/name"].quality is Quality.GOOD, within=3)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert sink.latest["pump2/name"].value == "PUMP-02"
        assert sink.latest["pump3/name"].quality is Quality.BAD
        assert sink.latest["pump3/name"].reason.startswith("timeout")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
