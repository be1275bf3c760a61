"""Fault scenarios against a running gateway: ``python -m hil scenarios --config FILE``.

The harness runs the gateway (``avila-edge run``) on a site it writes itself, with every field
device behind a ``FaultProxy``. A device is a simulator from ``hil/`` (``address: simulator``) or
real hardware (``address: 192.168.10.20:502``), so the same scenarios run on the bench and in the
plant. The gateway is watched only from outside, over ``/healthz`` and ``/status``, as an operator
would; nothing of the runtime is imported. Each scenario prints one line, ``PASS``/``FAIL``, what it
saw and how long it took; the exit code is 1 if any failed.

Scenarios (``scenarios:`` in the file picks and orders them):

- ``link-drop``: the proxy closes every connection and refuses new ones; each device's points must go
  non-good within ``recover``, and good again within ``recover`` once the link is back;
- ``latency``: replies late by half the device timeout: points stay good; then by twice the timeout:
  they go non-good; then good again when the latency is removed;
- ``corrupted-frames``: one bit flipped in every third chunk for ``fault_seconds``: the gateway stays
  healthy, every device's driver counts errors (nothing corrupted passes silently) and its points
  are good again afterwards;
- ``broker-restart``: a Mosquitto (``broker: simulator``) the gateway's uplink publishes to is
  stopped and started; the uplink must notice, the gateway stay healthy, and once the broker is back
  everything journaled while it was away must be delivered (the uplink's cursor passes it);
- ``power-cut``: ``kill -9`` of the gateway; started again it must answer healthy, keep its journal
  (the next sequence number does not go back) and read every device again.

The configuration file::

    recover: 10s               # how long a fault or its repair may take to show (default 10s)
    fault_seconds: 2s          # how long a fault is held where the check is "nothing breaks"
    gateway: [avila-edge]      # the command that runs the gateway (default: this Python's avila_edge.cli)
    broker: simulator          # optional: a local Mosquitto for broker-restart
    devices:
      - id: plc1
        address: simulator     # or HOST:PORT of a real Modbus TCP device
        unit_id: 1
        timeout: 500ms
        points:
          - {id: pump1/flow, table: holding, address: 0, type: float32}
    scenarios: [link-drop, latency, corrupted-frames, broker-restart, power-cut]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from hil.fault_proxy import FaultProxy

ALL = ("link-drop", "latency", "corrupted-frames", "broker-restart", "power-cut")
UPLINK = "local"
"""The name of the uplink to the harness's broker in the site the harness writes."""


class HarnessConfigError(ValueError):
    """The harness configuration is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Point:
    id: str
    table: str
    address: int
    type: str


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    address: str  # "simulator" or "host:port"
    unit_id: int
    timeout: float
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class HarnessConfig:
    devices: tuple[Device, ...]
    scenarios: tuple[str, ...] = ALL
    recover: float = 10.0
    fault_seconds: float = 2.0
    gateway: tuple[str, ...] = (sys.executable, "-m", "avila_edge.cli")  # a command, not an import
    broker: str | None = None


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", str(value))
    if match is None or float(match.group(1)) <= 0:
        raise HarnessConfigError(f"{where}: '{value}' is not a duration (e.g. 500ms, 2s)")
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


def load_harness(path: Path) -> HarnessConfig:
    """Read the harness configuration at ``path``; errors name the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessConfigError(f"{path}: cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise HarnessConfigError(f"{path}: expected a mapping at the top")
    unknown = set(raw) - {"recover", "fault_seconds", "gateway", "broker", "devices", "scenarios"}
    if unknown:
        raise HarnessConfigError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    devices: list[Device] = []
    for i, item in enumerate(raw.get("devices") or []):
        where = f"{path}: devices[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise HarnessConfigError(f"{where}: needs an id")
        address = str(item.get("address", "simulator"))
        if address != "simulator" and not re.fullmatch(r"[\w.\-]+:\d{1,5}", address):
            raise HarnessConfigError(f"{where}.address: '{address}' is neither 'simulator' nor HOST:PORT")
        points = []
        for j, p in enumerate(item.get("points") or []):
            try:
                points.append(Point(str(p["id"]), str(p.get("table", "holding")), int(p["address"]), str(p["type"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise HarnessConfigError(f"{where}.points[{j}]: needs id, address and type ({exc})") from exc
        if not points:
            raise HarnessConfigError(f"{where}.points: name at least one point to watch")
        devices.append(Device(item["id"], address, int(item.get("unit_id", 1)),
                              _seconds(item.get("timeout", "500ms"), f"{where}.timeout"), tuple(points)))  # fmt: skip
    if not devices:
        raise HarnessConfigError(f"{path}: devices: name at least one device")
    scenarios = tuple(raw.get("scenarios") or ALL)
    for name in scenarios:
        if name not in ALL:
            raise HarnessConfigError(f"{path}: scenarios: unknown scenario '{name}'; known: {', '.join(ALL)}")
    broker = raw.get("broker")
    if broker not in (None, "simulator"):
        raise HarnessConfigError(f"{path}: broker: only 'simulator' is supported")
    gateway = raw.get("gateway")
    return HarnessConfig(
        devices=tuple(devices),
        scenarios=scenarios,
        recover=_seconds(raw.get("recover", 10), f"{path}: recover"),
        fault_seconds=_seconds(raw.get("fault_seconds", 2), f"{path}: fault_seconds"),
        gateway=tuple(str(g) for g in gateway) if gateway else (sys.executable, "-m", "avila_edge.cli"),
        broker=broker,
    )


@dataclass(slots=True)
class Result:
    scenario: str
    passed: bool
    detail: str
    seconds: float

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.scenario:<17} {self.seconds:6.2f} s  {self.detail}"


class Failed(Exception):
    """A scenario's expectation was not met; the message says what was seen."""


@dataclass
class Rig:
    """What the scenarios act on: the gateway process, the proxies, the broker, an HTTP session."""

    config: HarnessConfig
    site: Path
    state_dir: Path
    http_port: int
    http: aiohttp.ClientSession
    proxies: dict[str, FaultProxy]
    broker: Any = None
    process: asyncio.subprocess.Process | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start_gateway(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.config.gateway, "run", "--config", str(self.site), "--state-dir", str(self.state_dir),
                stdout=log, stderr=log,
            )  # fmt: skip
        await self.until("the gateway answers /healthz", self.healthy, within=max(self.config.recover, 20))

    async def stop_gateway(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def healthy(self) -> bool:
        try:
            async with self.http.get(f"{self.url}/healthz") as answer:
                return answer.status == 200
        except aiohttp.ClientError:
            return False

    async def status(self) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/status") as answer:
            answer.raise_for_status()
            result: dict[str, Any] = await answer.json()
            return result

    async def qualities(self, device: Device) -> dict[str, str]:
        wanted = {p.id for p in device.points}
        return {p["id"]: p["quality"] for p in (await self.status())["points"] if p["id"] in wanted}

    async def all_good(self, device: Device, *, after: int = -1) -> bool:
        wanted = {p.id for p in device.points}
        points = [p for p in (await self.status())["points"] if p["id"] in wanted]
        return all(p["quality"] == "good" and (p["seq"] or -1) > after for p in points)

    async def none_good(self, device: Device) -> bool:
        return all(q != "good" for q in (await self.qualities(device)).values())

    async def next_seq(self) -> int:
        return int((await self.status())["journal"]["next_seq"])

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], *, within: float) -> float:
        started = time.monotonic()
        while not await check():
            if self.process is not None and self.process.returncode is not None:
                raise Failed(f"the gateway exited ({self.process.returncode}) while waiting until {what}")
            if time.monotonic() - started > within:
                raise Failed(f"not within {within:g} s: {what}")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def hold(self, seconds: float) -> None:
        """Keep a fault for ``seconds`` while checking that the gateway stays healthy."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not await self.healthy():
                raise Failed("the gateway stopped answering healthy during the fault")
            await asyncio.sleep(0.1)


# -- the scenarios ---------------------------------------------------------------------------------


async def link_drop(rig: Rig) -> str:
    seen = []
    for device in rig.config.devices:
        proxy = rig.proxies[device.id]
        await proxy.drop()
        down = await rig.until(f"{device.id}'s points are not good after the link drop",
                               partial(rig.none_good, device), within=rig.config.recover)  # fmt: skip
        seq = await rig.next_seq()
        await proxy.restore()
        up = await rig.until(f"{device.id}'s points are good again after the link is back",
                             partial(rig.all_good, device, after=seq), within=rig.config.recover)  # fmt: skip
        seen.append(f"{device.id} bad after {down:.1f} s, good {up:.1f} s after restore")
    return "; ".join(seen)


async def latency(rig: Rig) -> str:
    seen = []
    for device in rig.config.devices:
        proxy = rig.proxies[device.id]
        proxy.latency = device.timeout / 4  # a round trip is two chunks: half the timeout in all
        seq = await rig.next_seq()
        await rig.until(f"{device.id} reads good with {proxy.latency:g} s latency each way",
                        partial(rig.all_good, device, after=seq), within=rig.config.recover)  # fmt: skip
        proxy.latency = device.timeout
        down = await rig.until(f"{device.id}'s points are not good with replies later than the timeout",
                               partial(rig.none_good, device), within=rig.config.recover)  # fmt: skip
        proxy.latency = 0.0
        seq = await rig.next_seq()
        up = await rig.until(f"{device.id} is good again without latency",
                             partial(rig.all_good, device, after=seq), within=rig.config.recover)  # fmt: skip
        seen.append(f"{device.id} good at half the timeout, bad after {down:.1f} s beyond it, good {up:.1f} s after")
    return "; ".join(seen)


async def driver_errors(rig: Rig) -> dict[str, int]:
    """Errors each device's driver has counted so far (every kind together)."""
    return {str(d.get("device")): sum((d.get("errors") or {}).values()) for d in (await rig.status())["drivers"]}


async def corrupted_frames(rig: Rig) -> str:
    before = await driver_errors(rig)
    for proxy in rig.proxies.values():
        proxy.corrupt_every = 3
    try:
        await rig.hold(rig.config.fault_seconds)
    finally:
        for proxy in rig.proxies.values():
            proxy.corrupt_every = 0
    seq = await rig.next_seq()
    for device in rig.config.devices:
        await rig.until(f"{device.id} is good again after the corruption stops",
                        partial(rig.all_good, device, after=seq), within=rig.config.recover)  # fmt: skip
    after = await driver_errors(rig)
    counted = {device: after.get(device, 0) - before.get(device, 0) for device in sorted(rig.proxies)}
    silent = [device for device, n in counted.items() if n <= 0]
    if silent:  # a corrupted frame must be counted, not taken as a reading nor ignored
        raise Failed(f"no driver error counted for {', '.join(silent)} during the corrupted frames")
    return f"healthy through {rig.config.fault_seconds:g} s of corrupted frames, good again; errors counted {counted}"


async def uplink(rig: Rig) -> dict[str, Any]:
    uplinks: list[dict[str, Any]] = (await rig.status())["uplinks"]
    if not uplinks:
        raise Failed("the gateway reports no uplink to the broker")
    return uplinks[0]


async def delivered(rig: Rig, seq: int) -> bool:
    """Whether the uplink's readings cursor is past ``seq`` (the broker acknowledged everything before)."""
    cursors: dict[str, dict[str, int]] = (await rig.status())["cursors"]
    position = cursors.get(f"uplink:{UPLINK}:readings", {}).get("position", -1)
    return position >= seq


async def broker_restart(rig: Rig) -> str:
    if rig.broker is None:
        raise Failed("no broker in the harness configuration (broker: simulator)")
    seq = await rig.next_seq()
    await rig.until("the uplink delivers to the broker before the restart", partial(delivered, rig, seq),
                    within=rig.config.recover)  # fmt: skip
    await rig.broker.astop()

    async def disconnected() -> bool:
        return not (await uplink(rig))["connected"]

    noticed = await rig.until("the uplink notices the broker is gone", disconnected, within=rig.config.recover)
    await rig.hold(rig.config.fault_seconds)
    down = await rig.next_seq()  # readings up to here were journaled while the broker was away
    await rig.broker.astart()
    caught_up = await rig.until("the uplink reconnects and delivers what was journaled while the broker was down",
                                partial(delivered, rig, down), within=rig.config.recover)  # fmt: skip
    for device in rig.config.devices:
        await rig.until(f"{device.id} keeps reading across the broker restart",
                        partial(rig.all_good, device, after=seq), within=rig.config.recover)  # fmt: skip
    return (f"uplink down {noticed:.1f} s after the broker stopped; healthy while it was away; "
            f"everything before seq {down} delivered {caught_up:.1f} s after its restart")  # fmt: skip


async def power_cut(rig: Rig) -> str:
    before = await rig.next_seq()
    await rig.stop_gateway(signal.SIGKILL)
    started = time.monotonic()
    await rig.start_gateway()
    after = await rig.next_seq()
    if after < before:
        raise Failed(f"the journal went back from next seq {before} to {after}")
    for device in rig.config.devices:
        await rig.until(f"{device.id} reads good after the restart",
                        partial(rig.all_good, device, after=after - 1), within=rig.config.recover)  # fmt: skip
    return f"kill -9 at next seq {before}; healthy again after {time.monotonic() - started:.1f} s at seq {after}"


SCENARIOS: dict[str, Callable[[Rig], Awaitable[str]]] = {
    "link-drop": link_drop,
    "latency": latency,
    "corrupted-frames": corrupted_frames,
    "broker-restart": broker_restart,
    "power-cut": power_cut,
}


# -- the rig ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_text(config: HarnessConfig, proxies: dict[str, FaultProxy], http_port: int, broker_port: int | None) -> str:
    """The site the gateway runs on: every device reached through its proxy."""
    assets = sorted({p.id.split("/", 1)[0] for d in config.devices for p in d.points})
    devices = []
    for d in config.devices:
        devices.append({
            "id": d.id, "driver": "modbus",
            "connection": {"host": "127.0.0.1", "port": proxies[d.id].port, "unit_id": d.unit_id},
            "timing": {"poll_interval": "100ms", "timeout": f"{int(d.timeout * 1000)}ms",
                       "backoff_initial": "100ms", "backoff_max": "500ms"},
            "points": [{"id": p.id, "address": {"table": p.table, "address": p.address}, "type": p.type}
                       for p in d.points],
        })  # fmt: skip
    site: dict[str, Any] = {
        "site": {"id": "hil-scenarios", "name": "hil fault scenarios"},
        "http": {"host": "127.0.0.1", "port": http_port},
        "logging": {"level": "warning"},
        "assets": [{"id": a, "name": a, "type": "equipment"} for a in assets],
        "devices": devices,
    }
    if broker_port is not None:
        site["uplinks"] = [{"name": UPLINK, "host": "127.0.0.1", "port": broker_port, "plaintext": True}]
    return yaml.safe_dump(site, sort_keys=False)


@contextlib.asynccontextmanager
async def rig(config: HarnessConfig, work: Path) -> AsyncIterator[Rig]:
    async with contextlib.AsyncExitStack() as stack:
        proxies: dict[str, FaultProxy] = {}
        for device in config.devices:
            if device.address == "simulator":
                from hil.modbus_plc import ModbusPlc  # noqa: PLC0415 - pymodbus only when simulating

                plc = await stack.enter_async_context(ModbusPlc(port=0, unit_ids=(device.unit_id,)))
                host, port = "127.0.0.1", plc.port
            else:
                host, _, text = device.address.rpartition(":")
                port = int(text)
            proxies[device.id] = await stack.enter_async_context(FaultProxy(host, port))
        broker = None
        if config.broker == "simulator":
            from hil.mosquitto import Mosquitto  # noqa: PLC0415

            (work / "mosquitto").mkdir()
            broker = await stack.enter_async_context(Mosquitto(workdir=work / "mosquitto"))
        http_port = _free_port()
        site = work / "site.yaml"
        site.write_text(site_text(config, proxies, http_port, broker.port if broker else None), encoding="utf-8")
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)))
        the_rig = Rig(config, site, work / "state", http_port, http, proxies, broker, log=work / "gateway.log")
        stack.push_async_callback(the_rig.stop_gateway)
        await the_rig.start_gateway()
        for device in config.devices:
            await the_rig.until(f"{device.id} reads good before any fault", partial(the_rig.all_good, device),
                                within=max(config.recover, 20))  # fmt: skip
        yield the_rig


async def run_scenarios(config: HarnessConfig, *, report: Callable[[Result], None] = lambda r: None) -> list[Result]:
    """Run ``config.scenarios`` in order on one rig; a failed scenario does not stop the others."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="hil-scenarios-") as folder:
        async with rig(config, Path(folder)) as the_rig:
            for name in config.scenarios:
                started = time.monotonic()
                try:
                    detail, passed = await SCENARIOS[name](the_rig), True
                except (Failed, aiohttp.ClientError, KeyError, TypeError, ValueError) as exc:
                    detail, passed = f"{exc}" if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}", False
                    tail = the_rig.log.read_text(errors="replace").strip().splitlines()[-3:]
                    if tail:
                        detail += " | gateway log: " + " / ".join(tail)
                result = Result(name, passed, detail, time.monotonic() - started)
                report(result)
                results.append(result)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="harness configuration (YAML)")
    parser.add_argument("--only", help="comma-separated scenarios to run instead of the file's list")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_harness(args.config)
    except HarnessConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.only:
        names = tuple(n.strip() for n in args.only.split(","))
        unknown = [n for n in names if n not in ALL]
        if unknown:
            print(f"--only: unknown scenario {', '.join(unknown)}; known: {', '.join(ALL)}", file=sys.stderr)
            return 2
        config = replace(config, scenarios=names)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the simulator's complaints under faults are expected
    results = asyncio.run(run_scenarios(config, report=lambda r: print(r.line(), flush=True)))
    failed = [r.scenario for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
