"""``avila-edge fleet`` as a real process: killed with SIGKILL mid-stream again and again, it ends with
every reading once in its store and in VictoriaMetrics, and serves the fleet status as JSON and a page."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from avila_edge.config import load_document
from avila_edge.config.fleet import FleetConfig
from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import SystemClock
from avila_edge.journal import Journal
from avila_edge.sync.mqtt_uplink import MqttUplink
from hil.mosquitto import Mosquitto, free_port
from hil.victoria import VictoriaMetrics

from .conftest import fleet_seqs, readings, until

ROOT = Path(__file__).resolve().parents[2]

FLEET_YAML = """
broker: {{host: 127.0.0.1, port: {broker}, plaintext: true, client_id: rx, reconnect_max: 1s}}
state_dir: state
tsdb: {{url: "{vm}", bucket: fleet}}
http: {{host: 127.0.0.1, port: {http}}}
"""


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return int(r.status), bytes(r.read())


class FleetProcess:
    def __init__(self, config: Path, http: int) -> None:
        self.base = f"http://127.0.0.1:{http}"
        self.log = config.with_suffix(".log")
        with self.log.open("ab") as log:  # a file, not a pipe nobody reads
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "avila_edge.cli", "fleet", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def status(self) -> dict[str, Any]:
        code, body = get(self.base + "/status")
        assert code == 200
        result: dict[str, Any] = json.loads(body)
        return result

    async def ready(self) -> None:
        async def answers() -> bool:
            try:
                return bool((await asyncio.to_thread(self.status))["receiver"]["connected"])
            except OSError:
                assert self.proc.poll() is None, self.output()
                return False

        async with asyncio.timeout(30):
            while not await answers():
                await asyncio.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture
def started() -> Iterator[list[FleetProcess]]:
    """Every fleet process a test starts; those still running at the end are killed."""
    procs: list[FleetProcess] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            p.kill()


async def test_a_fleet_process_killed_mid_stream_holds_everything_once_and_reports_it(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics, started: list[FleetProcess]
) -> None:
    http = free_port()
    config = tmp_path / "fleet.yaml"
    config.write_text(FLEET_YAML.format(broker=broker.port, vm=vm.url, http=http))
    uplink_cfg = msgspec.convert(
        {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "ack": "fleet", "ack_timeout": 1.0,
         "batch_max": 50, "batch_age": 0.01, "reconnect_max": 1.0},
        MqttUplinkConfig,
    )  # fmt: skip
    async with (
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        asyncio.TaskGroup() as tg,
    ):
        task = tg.create_task(MqttUplink(uplink_cfg, gateway="gw1", journal=journal, clock=SystemClock()).run())

        async def ingest() -> None:  # the gateway records all along: every kill falls in the middle of a stream
            n = 0
            while True:
                await journal.append(readings(50, n))
                n += 50
                await asyncio.sleep(0.02)

        feeder = tg.create_task(ingest())
        for round_ in range(3):
            fleet = FleetProcess(config, http)
            started.append(fleet)
            await fleet.ready()
            await asyncio.sleep(0.2 + 0.15 * round_)
            fleet.kill()
        feeder.cancel()
        await journal.flush()
        total = journal.next_seq
        fleet = FleetProcess(config, http)
        started.append(fleet)
        await fleet.ready()
        await until(lambda: journal.cursors()["uplink:cloud:readings"].position >= total, within=60)
        task.cancel()
        status = await asyncio.to_thread(fleet.status)
        code, page = await asyncio.to_thread(get, fleet.base + "/")
        assert fleet.stop() == 0
    (gw,) = status["gateways"]
    assert (gw["id"], gw["entries"], gw["max_seq"], gw["missing"], gw["gaps"]) == ("gw1", total, total - 1, 0, 0)
    assert gw["last_seen_ns"] > 0
    assert status["receiver"]["malformed"] == 0
    assert code == 200
    assert re.search(rb"<td>gw1</td><td>\d+</td><td>" + str(total - 1).encode() + rb"</td><td>0</td>", page)
    assert fleet_seqs(tmp_path / "state") == list(range(total))
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(total)]


def test_the_receiver_configuration_shown_in_the_docs_loads(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "fleet.md").read_text()
    block = doc.split("`avila-edge fleet --config fleet.yaml`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "fleet.yaml"
    path.write_text(block)
    config = load_document(path, FleetConfig)
    assert config.broker.tls is not None and config.broker.tls.cert_file is not None
    assert config.tsdb is not None and config.tsdb.token_file is not None
