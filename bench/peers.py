"""Peers: ThingsBoard IoT Gateway and avila-edge polling the same hil Modbus PLC with the same point
list and publishing to the same Mosquitto, one after the other, each in its own process.

Opt-in (``python -m bench --only peers``): the first run installs ``thingsboard-gateway`` (and the
pymodbus version its Modbus connector pins) from PyPI into a virtual environment under
``~/.cache/avila-edge-bench/`` (``AVILA_BENCH_CACHE`` overrides), reused afterwards and never part of
the project. If it cannot be installed or started, the row says why and the table is still printed.

Both gateways poll ``POINTS`` float32 holding registers (addresses 40, 42, ...) every ``POLLS``
seconds; the bench rewrites all of them every millisecond so every poll sees new values (neither
side can skip an unchanged one). A subscriber counts readings as they arrive at the broker:
ThingsBoard's ``v1/gateway/telemetry`` JSON (the values of each record) and avila-edge's uplink
batches (reading entries). CPU seconds and resident memory are read from ``/proc/<pid>`` of each
gateway process, after a warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from avila_edge.journal import EntryKind
from avila_edge.sync.batch import decode_batch
from bench._table import Row
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import Mosquitto

POINTS = 30
FIRST_REGISTER = 40
POLLS = (0.1, 0.005)  # a usual poll period, and as fast as each can go
WARM_UP = 3.0
INSTALL_TIMEOUT = 900
TB_PACKAGES = ("thingsboard-gateway", "pymodbus==3.9.2", "pyserial", "pyserial-asyncio")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SESSION_LIMITS_REQUEST = "v1/devices/me/rpc/request/+"
SESSION_LIMITS = {"rateLimits": {}, "gatewayRateLimits": {}, "maxInflightMessages": 10000, "maxPayloadSize": 65536}


def _cache() -> Path:
    return Path(os.environ.get("AVILA_BENCH_CACHE", Path.home() / ".cache" / "avila-edge-bench"))


def ensure_thingsboard() -> Path:
    """The python of a venv with thingsboard-gateway installed (created on first use)."""
    venv = _cache() / "tb-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *TB_PACKAGES],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"pip install thingsboard-gateway failed: {result.stderr.strip()[-300:]}")
    marker.write_text(" ".join(TB_PACKAGES) + "\n")
    return python


# -- configurations --------------------------------------------------------------------------------


def thingsboard_config(folder: Path, broker: Mosquitto, plc_port: int, poll: float) -> None:
    """tb_gateway.json, modbus.json and logs.json for ThingsBoard IoT Gateway in ``folder``."""
    gateway = {
        "thingsboard": {
            "host": broker.host, "port": broker.port, "remoteShell": False, "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False}, "maxPayloadSizeBytes": 65536, "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500, "checkConnectorsConfigurationInSeconds": 3600, "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "bench"}, "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
            "rateLimits": "0:0,", "dpRateLimits": "0:0,", "messagesRateLimits": "0:0,",
            "deviceMessagesRateLimits": "0:0,", "deviceRateLimits": "0:0,", "deviceDpRateLimits": "0:0,",
        },
        "storage": {"type": "memory", "read_records_count": 1000, "max_records_count": 1000000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}],
    }  # fmt: skip
    timeseries = [
        {"tag": f"p{i}", "type": "32float", "functionCode": 3, "objectsCount": 2, "address": FIRST_REGISTER + 2 * i}
        for i in range(POINTS)
    ]
    modbus = {
        "master": {
            "slaves": [{
                "host": "127.0.0.1", "port": plc_port, "type": "tcp", "method": "socket", "unitId": 1,
                "deviceName": "plc1", "deviceType": "default", "timeout": 1, "byteOrder": "BIG", "wordOrder": "BIG",
                "retries": 0, "pollPeriod": int(poll * 1000), "connectAttemptTimeMs": 500, "connectAttemptCount": 5,
                "waitAfterFailedAttemptsMs": 1000, "attributes": [], "timeseries": timeseries,
                "attributeUpdates": [], "rpc": [],
            }]
        }
    }  # fmt: skip
    logs = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "plain", "level": "WARNING",
                              "filename": str(folder / "tb.log")}},
        "loggers": {name: {"handlers": ["file"], "level": "WARNING", "propagate": False}
                    for name in ("service", "connector", "converter", "tb_connection", "storage", "extension")},
        "root": {"level": "WARNING", "handlers": ["file"]},
    }  # fmt: skip
    (folder / "tb_gateway.json").write_text(json.dumps(gateway, indent=1))
    (folder / "modbus.json").write_text(json.dumps(modbus, indent=1))
    (folder / "logs.json").write_text(json.dumps(logs, indent=1))


def avila_config(folder: Path, broker: Mosquitto, plc_port: int, poll: float) -> Path:
    points = "\n".join(
        f"      - {{id: plc1/p{i}, address: {{table: holding, address: {FIRST_REGISTER + 2 * i}}}, type: float32}}"
        for i in range(POINTS)
    )
    path = folder / "site.yaml"
    path.write_text(f"""\
site: {{id: bench-peer}}
state_dir: {folder / "state"}
http: {{port: 0}}
logging: {{level: warning}}
assets: [{{id: plc1}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {plc_port}}}
    timing: {{poll_interval: {poll}s, timeout: 1s}}
    points:
{points}
uplinks:
  - {{host: {broker.host}, port: {broker.port}, plaintext: true, batch_age: 50ms}}
""")
    return path


# -- measuring -------------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _thingsboard_readings(payload: bytes) -> int:
    doc: dict[str, Any] = json.loads(payload)
    return sum(len(record.get("values", {})) for records in doc.values() for record in records)


def _avila_readings(payload: bytes) -> int:
    return sum(1 for _, kind, _ in decode_batch(payload).entries if kind == EntryKind.READING)


@contextlib.asynccontextmanager
async def _process(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    log = (cwd / "process.log").open("wb")
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def _measure(
    name: str, cmd: list[str], env: dict[str, str], folder: Path, broker: Mosquitto, topic: str,
    count: Callable[[bytes], int], seconds: float,
) -> tuple[float, float, float]:  # fmt: skip
    """(readings/s at the broker, CPU seconds per 1,000 readings, RSS bytes) of one gateway."""
    import aiomqtt

    received = 0

    async def consume(client: aiomqtt.Client) -> None:
        nonlocal received
        async for message in client.messages:
            payload = bytes(message.payload)
            if message.topic.matches(SESSION_LIMITS_REQUEST):
                # stand in for the ThingsBoard server: no rate limits (the gateway waits for this answer)
                response = str(message.topic).replace("/request/", "/response/")
                await client.publish(response, json.dumps(SESSION_LIMITS), qos=1)
            else:
                received += count(payload)

    async with aiomqtt.Client(broker.host, broker.port) as client, asyncio.TaskGroup() as tasks:
        await client.subscribe(topic, qos=1)
        await client.subscribe(SESSION_LIMITS_REQUEST, qos=1)
        consumer = tasks.create_task(consume(client), name=f"bench.peers.{name}.count")
        try:
            async with _process(cmd, cwd=folder, env=env) as proc:
                deadline = time.monotonic() + WARM_UP + 30
                while received == 0 or time.monotonic() < deadline - 30:  # running, delivering, warmed up
                    if proc.returncode is not None or time.monotonic() > deadline:
                        tail = (folder / "process.log").read_text(errors="replace")[-400:]
                        raise RuntimeError(f"{name} delivered nothing (exit {proc.returncode}): {tail}")
                    await asyncio.sleep(0.1)
                start_n, start_cpu, started = received, _cpu_seconds(proc.pid), time.perf_counter()
                await asyncio.sleep(seconds)
                n, cpu = received - start_n, _cpu_seconds(proc.pid) - start_cpu
                elapsed, rss = time.perf_counter() - started, _rss(proc.pid)
        finally:
            consumer.cancel()
    return n / elapsed, cpu / max(n, 1) * 1000, rss


async def _rewrite(plc: ModbusPlc) -> None:
    """Give every point a new value every millisecond."""
    v = 0.0
    while True:
        v += 1.0
        for i in range(POINTS):
            plc.set_value(FIRST_REGISTER + 2 * i, v + i / 100, "float32")
        await asyncio.sleep(0.001)


async def _compare(seconds: float) -> list[Row]:
    python = await asyncio.to_thread(ensure_thingsboard)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        async with ModbusPlc() as plc, Mosquitto() as broker, asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(_rewrite(plc), name="bench.peers.registers")
            try:
                for poll in POLLS:
                    rows += await _pair(Path(tmp) / f"poll-{poll}", python, broker, plc.port, poll, seconds)
            finally:
                writer.cancel()
    return rows


async def _pair(folder: Path, python: Path, broker: Mosquitto, plc_port: int, poll: float, seconds: float) -> list[Row]:
    tb_dir, av_dir = folder / "thingsboard", folder / "avila"
    tb_dir.mkdir(parents=True)
    av_dir.mkdir(parents=True)
    thingsboard_config(tb_dir, broker, plc_port, poll)
    site = avila_config(av_dir, broker, plc_port, poll)
    tb_env = {**os.environ, "TB_GW_CONFIG_DIR": str(tb_dir), "PYTHONWARNINGS": "ignore"}
    tb_cmd = [str(python), "-c", "from thingsboard_gateway.tb_gateway import daemon; daemon()"]
    av_cmd = [sys.executable, "-m", "avila_edge.cli", "run", "--config", str(site)]
    tb = await _measure("thingsboard", tb_cmd, tb_env, tb_dir, broker, "v1/gateway/telemetry",
                        _thingsboard_readings, seconds)  # fmt: skip
    av = await _measure(
        "avila-edge", av_cmd, dict(os.environ), av_dir, broker, "avila/+/batch", _avila_readings, seconds
    )
    label = f"{POINTS} points, {poll * 1000:g} ms poll"
    peer = "ThingsBoard IoT Gateway"
    return [
        Row("peers", f"delivered readings at the broker ({label})", av[0], "readings/s", tb[0], peer),
        Row("peers", f"CPU per 1,000 delivered readings ({label})", av[1] * 1000, "ms", tb[1] * 1000, peer),
        Row("peers", f"resident memory of the gateway ({label})", av[2] / 2**20, "MiB", tb[2] / 2**20, peer),
    ]


async def run(seconds: float) -> list[Row]:
    try:
        return await _compare(max(seconds, 3.0))
    except Exception as exc:
        while isinstance(exc, BaseExceptionGroup) and isinstance(exc.exceptions[0], Exception):
            exc = exc.exceptions[0]
        why = " ".join(str(exc).split())[:160]
        print(f"peers: skipped: {why}", file=sys.stderr)
        return [Row("peers", f"skipped: {why}", 0.0, "")]
