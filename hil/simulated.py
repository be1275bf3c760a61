"""The simulators that stand in for a rig of real devices when no targets file is given: each one
from ``hil/`` on a free loopback port, described as a target of ``hil/targets.py``, with its cable.

    async with simulated("opcua") as sim:   # sim.target: what to read; sim.link: cut() / mend()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from hil.targets import (
    PROTOCOLS,
    Expect,
    ModbusRtuTarget,
    ModbusTcpTarget,
    MqttTarget,
    Node,
    OpcUaTarget,
    Register,
    Scratch,
    Target,
    Value,
)


@dataclass(frozen=True, slots=True)
class Link:
    """How a test pulls a simulator's cable (``cut``) and plugs it back in (``mend``)."""

    cut: Callable[[], Awaitable[None]]
    mend: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Simulated:
    """A simulator from ``hil/`` serving on loopback, described as a target, and its cable."""

    target: Target
    link: Link


SIMULATOR_REGISTERS: Final = (
    Register("pump1/flow", "holding", 0, "float32", expect=Expect(100.0, 140.0)),
    Register(
        "pump1/flow_dcba",
        "holding",
        6,
        "float32",
        byte_order="little",
        word_order="little",
        expect=Expect(100.0, 140.0),
    ),
    Register("pump1/pressure", "holding", 8, "int16", scale=0.01, expect=Expect(3.0, 5.5)),
    Register("pump1/motor_temperature", "holding", 9, "int16", scale=0.1, expect=Expect(25.0, 80.0)),
    Register("pump1/speed_setpoint", "holding", 10, "uint16", expect=Expect(1500.0, 1500.0)),
    Register("pump1/name", "holding", 28, "string", length=4),
    Register("pump1/inlet_pressure", "input", 0, "float32", expect=Expect(3.0, 5.5)),
    Register("pump1/run", "coil", 0, "bool"),
    Register("pump1/running", "discrete", 0, "bool"),
)
"""What the tests read from ``hil.modbus_plc`` (its register map), with the ranges its pump stays in."""
SIMULATOR_SCRATCH: Final = Scratch(address=90)
"""In the PLC's free memory (holding 38..99)."""
SIMULATOR_VALUES: Final = ("flow", "pressure", "motor_temperature", "speed", "power")
_RANGES: Final = {"flow": Expect(100.0, 140.0), "pressure": Expect(3.0, 5.5), "motor_temperature": Expect(25.0, 80.0),
                  "speed": Expect(1500.0, 1500.0), "power": Expect(5.0, 20.0)}  # fmt: skip
PUBLISH_INTERVAL: Final = 0.1
"""Seconds between the simulated MQTT sensors' messages."""
PUBLISH_DEADLINE: Final = 2.0
"""Seconds one round of them may take (connect, publish, disconnect) before it is given up."""


def simulated(protocol: str) -> contextlib.AbstractAsyncContextManager[Simulated]:
    """Start the simulator of ``protocol`` on a free loopback port: ``async with simulated("opcua") as sim``."""
    starters = {"modbus_tcp": _modbus_tcp, "modbus_rtu": _modbus_rtu, "opcua": _opcua, "mqtt": _mqtt}
    if protocol not in starters:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    return starters[protocol]()


@contextlib.asynccontextmanager
async def _modbus_tcp() -> AsyncIterator[Simulated]:
    from hil.modbus_plc import ModbusPlc  # noqa: PLC0415 - reading a targets file needs no pymodbus

    async with ModbusPlc(port=0) as plc:
        target = ModbusTcpTarget("plc1", plc.host, plc.port, SIMULATOR_REGISTERS, timeout=0.5, poll_interval=0.1,
                                 scratch=SIMULATOR_SCRATCH)  # fmt: skip
        yield Simulated(target, Link(plc.drop_link, plc.restore_link))


@contextlib.asynccontextmanager
async def _modbus_rtu() -> AsyncIterator[Simulated]:
    from hil.modbus_plc import ModbusPlc  # noqa: PLC0415
    from hil.pty import PtyPair  # noqa: PLC0415

    async with PtyPair() as pair, ModbusPlc(serial_port=str(pair.instrument), baudrate=115200, parity="N") as plc:

        async def cut() -> None:
            await asyncio.to_thread(pair.cut)

        async def mend() -> None:
            await asyncio.to_thread(pair.restore)
            await plc.restore_link()  # the PLC opens the new pty behind the same path

        target = ModbusRtuTarget("rtu1", str(pair.device), SIMULATOR_REGISTERS, baudrate=115200, parity="N",
                                 timeout=0.2, poll_interval=0.05, scratch=SIMULATOR_SCRATCH)  # fmt: skip
        yield Simulated(target, Link(cut, mend))


@contextlib.asynccontextmanager
async def _opcua() -> AsyncIterator[Simulated]:
    from hil.opcua_server import OpcUaPlant  # noqa: PLC0415 - reading a targets file needs no asyncua

    async with OpcUaPlant(assets=("pump1",), policies=("NoSecurity",), tick=0.1) as server:
        nodes = [Node(f"pump1/{name}", server.node_id("pump1", name), "float32" if name == "power" else "float64",
                      _RANGES[name]) for name in SIMULATOR_VALUES]  # fmt: skip
        nodes += [Node("pump1/running", server.node_id("pump1", "running"), "bool"),
                  Node("pump1/name", server.node_id("pump1", "name"), "string")]  # fmt: skip
        target = OpcUaTarget("srv1", server.endpoint, tuple(nodes), timeout=1.0, poll_interval=0.1)
        yield Simulated(target, Link(server.stop, server.start))


@contextlib.asynccontextmanager
async def _mqtt() -> AsyncIterator[Simulated]:
    from hil.mosquitto import Mosquitto  # noqa: PLC0415

    async with Mosquitto() as broker, asyncio.TaskGroup() as tg:
        task = tg.create_task(_sensors(broker.host, broker.port), name="hil[targets].mqtt_sensors")
        values = [Value(f"pump1/{name}", f"plant/pump1/{name}", "$.v", "float64", _RANGES[name])
                  for name in SIMULATOR_VALUES]  # fmt: skip
        values.append(Value("pump1/flow_number", "plant-raw/pump1/flow", None, "float64", _RANGES["flow"]))
        try:
            yield Simulated(MqttTarget("broker1", broker.host, broker.port, tuple(values), timeout=1.0),
                            Link(broker.astop, broker.astart))  # fmt: skip
        finally:
            task.cancel()


async def _sensors(host: str, port: int) -> None:
    """The sensor fleet publishing every ``PUBLISH_INTERVAL`` until cancelled.

    Each round connects, publishes and disconnects within ``PUBLISH_DEADLINE``: while the broker is
    stopped (a link-loss test) a round fails or times out, and the next one tries again."""
    import aiomqtt  # noqa: PLC0415

    from hil.mqtt_sensors import SensorFleet  # noqa: PLC0415
    from hil.plant import PumpPlant  # noqa: PLC0415

    plants = {"pump1": PumpPlant(seed=1)}
    task = asyncio.current_task()
    while task is None or not task.cancelling():  # a cancellation swallowed by the client still ends it
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(PUBLISH_DEADLINE), SensorFleet(host, port, assets=plants, qos=0) as fleet:
                await fleet.publish_once(PUBLISH_INTERVAL)
        await asyncio.sleep(PUBLISH_INTERVAL)
