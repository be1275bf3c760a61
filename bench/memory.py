"""Memory: resident set size of a gateway process by number of configured points, and after
importing every driver, each in a fresh process.

A gateway child builds a site (Modbus devices of up to 10,000 float32 points each, ten points per
asset) in code, or writes it as a YAML file and loads it with the config loader (the ``yaml``
rows: the loader's own footprint shows as the difference from the same points built in code; the
parser's freed memory is mostly reused by the running gateway), and runs the whole gateway
(journal, audit, twins, pipeline, drivers, HTTP) for ``SETTLE`` seconds with its devices pointing
at a port where nothing listens: drivers are created and retry, their points turn Bad once and
are journaled. Then it reports VmRSS and VmHWM from ``/proc/self/status``. The baseline is a bare
interpreter (``python -c``) reading its own status. Memory per point is the slope from 100 to
100,000 points: the bounded caches (the journal's tail cache of 1 MiB, SQLite's page cache of each
connection) fill by about 10,000 points and are not a per-point cost. (A site file is capped at 200,000 YAML values,
about 40,000 points written this way; the YAML child raises the cap.)

The ``all`` child runs a pump site with one device per driver, the shipped autoencoder, the audit
log, an uplink and both northbound servers (``all_drivers_yaml``): the resident memory of a gateway
with everything loaded.

``python -m bench.memory drivers|all|all-but-model|points N|yaml N`` is the child.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench._table import Row

if TYPE_CHECKING:
    from avila_edge.config.model import GatewayConfig

SETTLE = 0.5
ALL_SETTLE = 2.0
"""Seconds the every-driver gateway runs after its OPC UA server is up (the model loads, drivers retry)."""
DEVICE_POINTS = 10_000
POINTS_PER_ASSET = 10
DRIVER_MODULES = ("drivers.modbus.driver", "drivers.opcua.driver", "drivers.mqtt.driver", "drivers.coap.driver",
                  "drivers.serial.driver", "avila_edge.runtime.gateway", "avila_edge.anomaly.service")  # fmt: skip


def _status() -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon (private memory; the rest of VmRSS is file and shared pages, mostly
    shared libraries) of this process in bytes."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = int(value.split()[0]) * 1024
    return out


def site_yaml(points: int, state_dir: Path, port: int) -> str:
    """A site with ``points`` Modbus float32 points on devices of up to ``DEVICE_POINTS`` points."""
    lines = ["site: {id: bench-memory}", f"state_dir: {state_dir}", "http: {port: 0}", "assets:"]
    assets = (points + POINTS_PER_ASSET - 1) // POINTS_PER_ASSET
    lines += [f"  - {{id: a{a}}}" for a in range(assets)]
    lines.append("devices:")
    for d, first in enumerate(range(0, points, DEVICE_POINTS)):
        lines += [f"  - id: plc{d}", "    driver: modbus", f"    connection: {{host: 127.0.0.1, port: {port}}}",
                  "    timing: {poll_interval: 1s, backoff_initial: 10s}", "    points:"]  # fmt: skip
        for i in range(first, min(points, first + DEVICE_POINTS)):
            a, p = divmod(i, POINTS_PER_ASSET)
            lines.append(f"      - {{id: a{a}/p{p}, address: {{table: holding, address: {(i - first) * 2}}}}}")
    return "\n".join(lines) + "\n"


def all_drivers_yaml(state_dir: Path, port: int, opcua_port: int, *, model: bool = True) -> str:
    """A pump site that loads everything: one device per driver (Modbus, OPC UA, MQTT, CoAP, serial)
    feeding one pump twin, the shipped autoencoder scoring it, the audit log, a cloud uplink and both
    northbound servers (OPC UA with its secure endpoints, the MQTT publisher). Nothing listens at
    ``port`` and the serial port does not exist: every driver is created, fails to connect and retries.
    Without ``model`` the site has no anomaly section (no numpy, no onnxruntime)."""
    anomaly = "anomaly:\n  detectors:\n    - {id: health, asset: pump1, detector: onnx, model: pump-ae}\n"
    return f"""\
site: {{id: bench-all}}
state_dir: {state_dir}
http: {{port: 0}}
assets: [{{id: pump1, type: centrifugal-pump}}]
devices:
  - id: plc
    driver: modbus
    connection: {{host: 127.0.0.1, port: {port}}}
    timing: {{poll_interval: 1s, backoff_initial: 10s}}
    points:
      - {{id: pump1/speed_setpoint, address: {{table: holding, address: 0}}, type: float32}}
      - {{id: pump1/flow, address: {{table: holding, address: 2}}, type: float32}}
  - id: opc
    driver: opcua
    connection: {{endpoint: "opc.tcp://127.0.0.1:{port}/plant"}}
    timing: {{backoff_initial: 10s}}
    points:
      - {{id: pump1/pressure, address: {{node: "ns=2;s=pump1.pressure"}}, type: float64}}
  - id: broker
    driver: mqtt
    connection: {{host: 127.0.0.1, port: {port}}}
    timing: {{backoff_initial: 10s}}
    points:
      - {{id: pump1/current, address: {{topic: plant/pump1/current}}, type: float64}}
  - id: node
    driver: coap
    connection: {{mode: client, host: 127.0.0.1, port: {port}}}
    timing: {{backoff_initial: 10s}}
    points:
      - {{id: pump1/vibration, address: {{path: /vibration}}, type: float64}}
  - id: sonde
    driver: serial
    connection: {{port: {state_dir}/no-such-tty, framing: nmea}}
    timing: {{backoff_initial: 10s}}
    points:
      - {{id: pump1/motor_temperature, address: {{sentence: MTW, field: 1}}, type: float64}}
{anomaly if model else ""}uplinks:
  - {{host: 127.0.0.1, port: {port}, plaintext: true}}
north:
  opcua: {{port: {opcua_port}, anonymous: true}}
  mqtt: {{host: 127.0.0.1, port: {port}, plaintext: true}}
"""


def site_config(points: int, state_dir: Path, port: int) -> GatewayConfig:
    """The same site as ``site_yaml``, built in code (no YAML parsing in the process)."""
    from avila_edge.config.model import (
        AssetConfig,
        DeviceConfig,
        GatewayConfig,
        HttpConfig,
        PointConfig,
        SiteConfig,
        TimingConfig,
    )  # fmt: skip
    from drivers.modbus.config import ModbusAddress, ModbusConnection

    devices = []
    for d, first in enumerate(range(0, points, DEVICE_POINTS)):
        ids = range(first, min(points, first + DEVICE_POINTS))
        devices.append(DeviceConfig(
            id=f"plc{d}", driver="modbus", connection=ModbusConnection(host="127.0.0.1", port=port),
            timing=TimingConfig(poll_interval=1.0, backoff_initial=10.0),
            points=tuple(PointConfig(id=f"a{i // POINTS_PER_ASSET}/p{i % POINTS_PER_ASSET}",
                                     address=ModbusAddress(table="holding", address=(i - first) * 2)) for i in ids),
        ))  # fmt: skip
    assets = tuple(AssetConfig(id=f"a{a}") for a in range((points + POINTS_PER_ASSET - 1) // POINTS_PER_ASSET))
    return GatewayConfig(site=SiteConfig(id="bench-memory"), devices=tuple(devices), assets=assets,
                         state_dir=state_dir, http=HttpConfig(port=0))  # fmt: skip


async def _gateway(points: int, *, from_yaml: bool) -> dict[str, int]:
    from avila_edge.config import _yaml, load_config
    from avila_edge.core import SystemClock
    from avila_edge.runtime.gateway import Gateway
    from hil.mosquitto import free_port

    with tempfile.TemporaryDirectory() as tmp:
        if from_yaml:
            path = Path(tmp) / "site.yaml"
            path.write_text(site_yaml(points, Path(tmp) / "state", free_port()))
            _yaml.MAX_VALUES = max(_yaml.MAX_VALUES, points * 6)  # a site file is capped at 200,000 YAML values
            config = load_config(path)
        else:
            config = site_config(points, Path(tmp) / "state", free_port())
        async with Gateway.running(config, clock=SystemClock()) as gateway:
            await asyncio.sleep(SETTLE)
            await gateway.journal.flush()
            return _status()


async def _everything(*, model: bool) -> dict[str, int]:
    from avila_edge.config import load_config
    from avila_edge.core import SystemClock
    from avila_edge.runtime.gateway import Gateway
    from hil.mosquitto import free_port

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(all_drivers_yaml(Path(tmp) / "state", free_port(), free_port(), model=model))
        async with Gateway.running(load_config(path), clock=SystemClock()) as gateway:
            server = gateway.north["opcua"]
            async with asyncio.timeout(30):
                await server.ready.wait()  # type: ignore[attr-defined]
            await asyncio.sleep(ALL_SETTLE)
            await gateway.journal.flush()
            return _status()


def child(args: list[str]) -> dict[str, int]:
    logging.disable(logging.WARNING)  # the drivers' connection failures are expected here
    if args[0] in ("points", "yaml"):
        return asyncio.run(_gateway(int(args[1]), from_yaml=args[0] == "yaml"))
    if args[0] in ("all", "all-but-model"):
        return asyncio.run(_everything(model=args[0] == "all"))
    if args[0] == "drivers":
        import importlib

        for name in DRIVER_MODULES:
            importlib.import_module(name)
    return _status()


def _measure(*args: str) -> dict[str, int]:
    cmd = [sys.executable, "-m", "bench.memory", *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    return dict(json.loads(out.stdout.splitlines()[-1]))


def _bare() -> dict[str, int]:
    code = "import json, pathlib; print(json.dumps({l.split(':')[0]: int(l.split()[1]) * 1024 for l in "
    code += "pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith(('VmRSS', 'VmHWM'))}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    return dict(json.loads(out.stdout))


async def run(seconds: float) -> list[Row]:
    sizes = (100, 10_000, 100_000) if seconds >= 1 else (100, 2_000)
    yaml_size = 10_000 if seconds >= 1 else 2_000
    # RSS does not depend on CPU contention: the children run side by side
    bare, drivers, everything, no_model, from_yaml, *in_code = await asyncio.gather(
        asyncio.to_thread(_bare),
        asyncio.to_thread(_measure, "drivers"),
        asyncio.to_thread(_measure, "all"),
        asyncio.to_thread(_measure, "all-but-model"),
        asyncio.to_thread(_measure, "yaml", str(yaml_size)),
        *(asyncio.to_thread(_measure, "points", str(n)) for n in sizes),
    )
    mib, base = 2**20, bare["VmRSS"] / 2**20
    rss = {n: r["VmRSS"] for n, r in zip(sizes, in_code, strict=True)}
    rows = [Row("memory", f"gateway RSS, {n:,} points", rss[n] / mib, "MiB", base, "bare python") for n in sizes]
    low, high = sizes[0], sizes[-1]
    rows += [
        Row("memory", f"memory per point ({low:,} → {high:,})", (rss[high] - rss[low]) / (high - low), "B"),
        Row("memory", f"gateway RSS, {yaml_size:,} points loaded from YAML", from_yaml["VmRSS"] / mib, "MiB",
            rss[yaml_size] / mib, "same points built in code"),
        Row("memory", f"extra per point when loaded from YAML ({yaml_size:,} points)",
            (from_yaml["VmRSS"] - rss[yaml_size]) / yaml_size, "B"),
        Row("memory", "RSS after importing every driver", drivers["VmRSS"] / mib, "MiB", base, "bare python"),
        Row("memory", "gateway RSS, every driver running, both north servers", no_model["VmRSS"] / mib, "MiB",
            base, "bare python"),
        Row("memory", "the same with the ONNX autoencoder scoring the pump",
            everything["VmRSS"] / mib, "MiB", base, "bare python"),
        Row("memory", "peak RSS of that gateway (VmHWM)", everything["VmHWM"] / mib, "MiB", base, "bare python"),
        Row("memory", "private memory of that gateway (RssAnon; the rest is library pages)",
            everything["RssAnon"] / mib, "MiB", everything["VmRSS"] / mib, "its RSS"),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1:])))
