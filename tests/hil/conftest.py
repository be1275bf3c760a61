"""The targets of the integration tests: the simulators of ``hil/``, or the devices of ``AVILA_HIL_TARGETS``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import SystemClock
from avila_edge.driver import Driver
from avila_edge.driver.registry import load_plugins
from drivers.modbus.config import ModbusAddress, ModbusConnection
from drivers.mqtt.config import MqttAddress, MqttConnection
from drivers.mqtt.config import TlsFiles as MqttTls
from drivers.opcua.config import OpcUaAddress, OpcUaConnection
from hil.simulated import Link, simulated
from hil.targets import (
    Expect,
    ModbusRtuTarget,
    ModbusTcpTarget,
    MqttTarget,
    OpcUaTarget,
    Target,
    Targets,
    from_environment,
    load,
)

from ..drivers.harness import Collector, run_driver

SIMULATOR_DEADLINE = 10.0
SCRATCH_POINT = "hil/scratch"


@dataclass(frozen=True, slots=True)
class Rig:
    """The targets of one protocol; ``link`` only when they are a simulator (its cable can be pulled)."""

    protocol: str
    targets: tuple[Target, ...]
    deadline: float
    file: Path | None
    link: Link | None = None

    @property
    def source(self) -> str:
        return str(self.file) if self.file is not None else "the hil/ simulators"


@pytest.fixture(scope="session")
def targets_file() -> Targets | None:
    """The targets file named by AVILA_HIL_TARGETS, read once (a malformed one fails every test that uses it)."""
    path = from_environment()
    return load(path) if path is not None else None


@pytest.fixture
async def rig(protocol: str, targets_file: Targets | None) -> AsyncIterator[Rig]:
    if targets_file is not None:
        found = targets_file.of(protocol)
        if not found:
            pytest.skip(f"{targets_file.file} names no {protocol} target")
        yield Rig(protocol, found, targets_file.deadline, targets_file.file)
        return
    async with simulated(protocol) as sim:
        yield Rig(protocol, (sim.target,), SIMULATOR_DEADLINE, None, sim.link)


# -- a target as the drivers' own configuration -----------------------------------------------------


def expectations(target: Target) -> dict[str, Expect | None]:
    """Point id -> the range its value must lie in (None: any value that reads Good)."""
    if isinstance(target, ModbusTcpTarget | ModbusRtuTarget):
        return {r.id: r.expect for r in target.registers}
    if isinstance(target, OpcUaTarget):
        return {n.id: n.expect for n in target.nodes}
    return {v.id: v.expect for v in target.values}


def device_of(target: Target, *, scratch: bool = False) -> DeviceConfig:
    """The DeviceConfig the gateway would load for ``target`` (``scratch``: with its scratch register, writable)."""
    if isinstance(target, ModbusTcpTarget | ModbusRtuTarget):
        points = [
            PointConfig(
                id=r.id,
                address=ModbusAddress(
                    table=r.table,
                    address=r.address,
                    length=r.length or None,
                    byte_order=r.byte_order,
                    word_order=r.word_order,
                ),
                type=DataType(r.type),
                scale=r.scale,
            )
            for r in target.registers
        ]
        if scratch and target.scratch is not None:
            address = ModbusAddress(table="holding", address=target.scratch.address)
            points.append(PointConfig(SCRATCH_POINT, address, DataType(target.scratch.type), writable=True))
        if isinstance(target, ModbusTcpTarget):
            connection = ModbusConnection(host=target.host, port=target.port, unit_id=target.unit_id)
        else:
            connection = ModbusConnection(
                transport="rtu",
                port=target.port,
                baudrate=target.baudrate,
                parity=target.parity,
                stopbits=target.stopbits,
                unit_id=target.unit_id,
            )
        timing = TimingConfig(
            poll_interval=target.poll_interval, timeout=target.timeout, backoff_initial=0.05, backoff_max=0.5
        )
        return DeviceConfig(id=target.id, driver="modbus", connection=connection, points=tuple(points), timing=timing)
    if isinstance(target, OpcUaTarget):
        opcua = OpcUaConnection(
            endpoint=target.endpoint,
            security_mode=target.security_mode,
            security_policy=target.security_policy,  # type: ignore[arg-type] # the loader allows only these
            certificate_dir=target.certificate_dir,
            trusted_server_certificates=target.trusted_server_certificates,
            username=target.username,
            password_file=target.password_file,
            session_timeout=10.0,
        )
        nodes = tuple(PointConfig(n.id, OpcUaAddress(node=n.node), DataType(n.type)) for n in target.nodes)
        timing = TimingConfig(
            poll_interval=target.poll_interval, timeout=target.timeout, backoff_initial=0.05, backoff_max=0.5
        )
        return DeviceConfig(id=target.id, driver="opcua", connection=opcua, points=nodes, timing=timing)
    return _mqtt_device(target)


def _mqtt_device(target: MqttTarget) -> DeviceConfig:
    tls = None
    if target.tls is not None:
        t = target.tls
        tls = MqttTls(ca_file=t.ca_file, cert_file=t.cert_file, key_file=t.key_file, verify_hostname=t.verify_hostname)
    connection = MqttConnection(
        host=target.host, port=target.port, tls=tls, username=target.username, password_file=target.password_file
    )
    values = tuple(
        PointConfig(
            v.id,
            MqttAddress(topic=v.topic, value_path=v.value_path, format="json" if v.value_path else "number"),
            DataType(v.type),
        )
        for v in target.values
    )
    timing = TimingConfig(timeout=target.timeout, backoff_initial=0.05, backoff_max=0.3)
    return DeviceConfig(id=target.id, driver="mqtt", connection=connection, points=values, timing=timing)


def check(device: DeviceConfig) -> list[str]:
    """The driver's own objections to ``device`` (what the gateway's config loader would report)."""
    plugin = load_plugins()[device.driver]
    problems = plugin.check_device(device) if plugin.check_device is not None else []
    return [f"{device.id}: {path}: {message}" for path, message in problems]


def running(device: DeviceConfig, within: float) -> contextlib.AbstractAsyncContextManager[tuple[Driver, Collector]]:
    """The driver of ``device``, found through the driver registry as the gateway finds it, running."""
    driver = load_plugins()[device.driver].create(device, SystemClock())
    return run_driver(driver, connected=False, within=within)
