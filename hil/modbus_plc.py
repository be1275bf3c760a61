"""A Modbus PLC serving the pump plant over TCP or over RTU on a serial port, with faults that can be
injected while it runs.

Over RTU (``serial_port=``, the instrument end of a ``hil.pty.PtyPair`` or a real adapter) the units
share one line as on RS-485; ``silent_units`` are units whose replies never leave (a unit that is
configured in the gateway but dead or absent on the bus).

Register map (0-based protocol addresses; every unit id serves its own pump):

holding registers
  0-1    flow              float32  ABCD (big bytes, big words)    m3/h
  2-3    flow              float32  CDAB (big bytes, little words)
  4-5    flow              float32  BADC (little bytes, big words)
  6-7    flow              float32  DCBA (little bytes, little words)
  8      pressure          int16    x100                           bar
  9      motor_temperature int16    x10                            degC
  10     speed_setpoint    uint16   (writable)                     rpm
  11     status            uint16   bit0 running, bit1 high temperature, bit2 high vibration
  12-13  run_hours         uint32   ABCD x10                       h
  14-15  run_hours         uint32   CDAB x10
  16-19  energy            int64    ABCD                           Wh
  20-23  energy            float64  ABCD                           kWh
  24-27  energy            float64  DCBA
  28-31  name              string   8 characters ("PUMP-0<unit>")
  32-33  vibration         float32  ABCD                           mm/s
  34-35  current           float32  ABCD                           A
  36-37  power             float32  ABCD                           kW
  38-99  free memory: tests write fixed values here (the plant never overwrites them)
input registers
  0-1    pressure          float32  ABCD                           bar
  2      motor_temperature int16    x10                            degC
  3-4    vibration         float32  ABCD                           mm/s
  5-99   free memory
coils
  0      run command (writable: false stops the pump)
  1-63   free memory
discrete inputs
  0      running
  1      high temperature alarm (> 80 degC)
  2      high vibration alarm (> 7.1 mm/s)
  3-63   free memory
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from hil.plant import PumpPlant
from hil.registers import Order, encode

logger = logging.getLogger(__name__)

Table = Literal["coil", "discrete", "holding", "input"]
TABLE_SIZE = 100
BIT_TABLE_SIZE = 64
_TABLE_OF_FUNCTION: dict[int, Table] = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 6: "holding",
                                         16: "holding", 22: "holding", 23: "holding", 4: "input"}  # fmt: skip


@dataclass(frozen=True)
class MapEntry:
    name: str
    table: Table
    address: int
    kind: str
    source: str
    scale: float = 1.0
    byte_order: Order = "big"
    word_order: Order = "big"
    length: int = 0


REGISTER_MAP: tuple[MapEntry, ...] = (
    MapEntry("flow", "holding", 0, "float32", "flow"),
    MapEntry("flow_cdab", "holding", 2, "float32", "flow", word_order="little"),
    MapEntry("flow_badc", "holding", 4, "float32", "flow", byte_order="little"),
    MapEntry("flow_dcba", "holding", 6, "float32", "flow", byte_order="little", word_order="little"),
    MapEntry("pressure_x100", "holding", 8, "int16", "pressure", scale=100),
    MapEntry("motor_temperature_x10", "holding", 9, "int16", "motor_temperature", scale=10),
    MapEntry("speed_setpoint", "holding", 10, "uint16", "speed_setpoint"),
    MapEntry("status", "holding", 11, "uint16", "status"),
    MapEntry("run_hours", "holding", 12, "uint32", "run_hours", scale=10),
    MapEntry("run_hours_cdab", "holding", 14, "uint32", "run_hours", scale=10, word_order="little"),
    MapEntry("energy_wh", "holding", 16, "int64", "energy"),
    MapEntry("energy_kwh", "holding", 20, "float64", "energy", scale=0.001),
    MapEntry(
        "energy_kwh_dcba", "holding", 24, "float64", "energy", scale=0.001, byte_order="little", word_order="little"
    ),
    MapEntry("name", "holding", 28, "string", "name", length=4),
    MapEntry("vibration", "holding", 32, "float32", "vibration"),
    MapEntry("current", "holding", 34, "float32", "current"),
    MapEntry("power", "holding", 36, "float32", "power"),
    MapEntry("pressure", "input", 0, "float32", "pressure"),
    MapEntry("motor_temperature_x10", "input", 2, "int16", "motor_temperature", scale=10),
    MapEntry("vibration", "input", 3, "float32", "vibration"),
)
_WRITES = frozenset({5, 6, 15, 16, 22, 23})
FIRST_FREE = {"holding": 38, "input": 5, "coil": 1, "discrete": 3}


@dataclass
class Faults:
    """What is wrong with the PLC right now. Change it from tests or the command line."""

    latency: float = 0.0
    exceptions: list[tuple[int | None, Table, range, int]] = field(default_factory=list)
    link_up: bool = True

    def set_latency(self, seconds: float) -> None:
        self.latency = max(0.0, seconds)

    def set_exception(self, table: Table, addresses: range, code: int = 2, *, unit: int | None = None) -> None:
        """Answer requests touching ``addresses`` of ``table`` with exception ``code``."""
        self.exceptions.append((unit, table, addresses, code))

    def clear(self) -> None:
        self.latency = 0.0
        self.exceptions.clear()

    def exception_for(self, unit: int, table: Table, first: int, count: int) -> int | None:
        for u, t, rng, code in self.exceptions:
            if t == table and (u is None or u == unit) and first < rng.stop and rng.start < first + count:
                return code
        return None


class ModbusPlc:
    """``async with ModbusPlc(port=0) as plc`` serves pumps on 127.0.0.1:``plc.port``;
    ``ModbusPlc(serial_port=path, unit_ids=(1, 2), silent_units=(3,))`` serves them over RTU."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_ids: tuple[int, ...] = (1,),
        time_source: Callable[[], float] = time.monotonic,
        seed: int = 1,
        serial_port: str | None = None,
        baudrate: int = 19200,
        parity: Literal["N", "E", "O"] = "E",
        stopbits: int = 1,
        silent_units: tuple[int, ...] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.line = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits}
        self.unit_ids = unit_ids
        self.silent_units = frozenset(silent_units)
        self.faults = Faults()
        self.plants = {u: PumpPlant(seed=seed + u) for u in (*unit_ids, *silent_units)}
        self.requests: Counter[int] = Counter()
        self.unit_requests: Counter[int] = Counter()
        """Requests served (or, for silent units, received) per unit id."""
        self._time = time_source
        self._last = {u: time_source() for u in self.plants}
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._regs: dict[tuple[int, Table], list[int]] = {}
        self._devices = [self._device(u) for u in self.plants]

    @property
    def plant(self) -> PumpPlant:
        """The pump behind the first unit id."""
        return self.plants[self.unit_ids[0]]

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.serial_port is not None:
            await self._start_serial(self.serial_port)
            return
        server = ModbusTcpServer(self._devices, address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        transport: Any = server.transport
        self.port = int(transport.sockets[0].getsockname()[1])
        self.faults.link_up = True
        logger.info("modbus PLC serving units %s on %s:%d", self.unit_ids, self.host, self.port)

    async def _start_serial(self, path: str) -> None:
        server = ModbusSerialServer(
            self._devices,
            port=path,
            baudrate=int(self.line["baudrate"]),
            parity=str(self.line["parity"]),
            stopbits=int(self.line["stopbits"]),
            ignore_missing_devices=True,
            trace_packet=self._on_the_line,
        )
        await server.serve_forever(background=True)
        self._server = server
        self.faults.link_up = True
        units = sorted(set(self.unit_ids) - self.silent_units)
        logger.info("modbus PLC serving units %s over RTU on %s (silent: %s)", units, path, sorted(self.silent_units))

    def _on_the_line(self, sending: bool, frame: bytes) -> bytes:
        """Every frame the RTU server sends: a silent unit's reply never leaves."""
        if sending and frame and frame[0] in self.silent_units:
            return b""
        return frame

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def drop_link(self) -> None:
        """Close every connection and refuse new ones (the cable is pulled)."""
        self.faults.link_up = False
        await self.stop()

    async def restore_link(self) -> None:
        """Serve again on the same port (over RTU: reopen the serial port, after the cable is back)."""
        await self.stop()
        await self.start()

    # -- register access --------------------------------------------------------------------------

    def _device(self, unit: int) -> SimDevice:
        blocks = (
            [SimData(0, count=BIT_TABLE_SIZE, values=False, datatype=DataType.BITS)],
            [SimData(0, count=BIT_TABLE_SIZE, values=False, datatype=DataType.BITS)],
            [SimData(0, count=TABLE_SIZE, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=TABLE_SIZE, values=0, datatype=DataType.REGISTERS)],
        )
        return SimDevice(id=unit, simdata=blocks, action=functools.partial(self._action, unit))

    def set_registers(
        self, address: int, values: list[int], *, table: Table = "holding", unit: int | None = None
    ) -> None:
        """Write raw registers (use the free area, see the register map)."""
        regs = self._regs.setdefault((unit or self.unit_ids[0], table), [0] * TABLE_SIZE)
        regs[address : address + len(values)] = values

    def set_value(self, address: int, value: float | int | str, kind: str, *, table: Table = "holding",
                  byte_order: Order = "big", word_order: Order = "big", length: int = 0,
                  unit: int | None = None) -> None:  # fmt: skip
        """Encode ``value`` at ``address`` (free area) with the given type and orders."""
        self.set_registers(address, encode(value, kind, byte_order=byte_order, word_order=word_order, length=length),
                           table=table, unit=unit)  # fmt: skip

    def set_bit(self, address: int, value: bool, *, table: Table = "coil", unit: int | None = None) -> None:
        bits = self._regs.setdefault((unit or self.unit_ids[0], table), [0] * BIT_TABLE_SIZE)
        bits[address] = int(bool(value))

    def bit(self, address: int, *, table: Table = "coil", unit: int | None = None) -> bool:
        return bool(self._regs.get((unit or self.unit_ids[0], table), [0] * BIT_TABLE_SIZE)[address])

    def registers(self, address: int, count: int, *, table: Table = "holding", unit: int | None = None) -> list[int]:
        regs = self._regs.get((unit or self.unit_ids[0], table), [0] * TABLE_SIZE)
        return regs[address : address + count]

    async def _action(
        self,
        unit: int,
        function_code: int,
        start: int,
        address: int,
        count: int,
        current: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _TABLE_OF_FUNCTION.get(function_code)
        if function_code in _WRITES and set_values is None:
            return None  # pymodbus asks again after a write to build the reply: not a new request
        self.requests[function_code] += 1
        self.unit_requests[unit] += 1
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        code = self.faults.exception_for(unit, table, address, count)
        if code is not None:
            return ExcCodes(code)
        plant = self.plants[unit]
        now = self._time()
        plant.step(now - self._last[unit])
        self._last[unit] = now
        if set_values is not None:
            self._apply_write(unit, table, address, set_values)
        self._refresh(unit, table, start, current)
        return None

    def _apply_write(self, unit: int, table: Table, address: int, values: list[int] | list[bool]) -> None:
        plant = self.plants[unit]
        if table == "coil":
            for i, v in enumerate(values):
                if address + i == 0:
                    plant.set_running(bool(v))
                self.set_bit(address + i, bool(v), unit=unit)
            return
        for i, v in enumerate(values):
            if address + i == 10:
                plant.set_speed(int(v))
        memory = self._regs.setdefault((unit, table), [0] * TABLE_SIZE)
        memory[address : address + len(values)] = [int(v) for v in values]

    def _refresh(self, unit: int, table: Table, start: int, current: list[int]) -> None:
        """Write the plant's live values and the test memory into the block pymodbus answers from."""
        plant = self.plants[unit]
        if table in ("coil", "discrete"):
            bits = list(self._regs.get((unit, table), [0] * BIT_TABLE_SIZE))
            if table == "coil":
                bits[0] = int(plant.running)
            else:
                bits[0:3] = [int(plant.running), int(plant.high_temperature), int(plant.high_vibration)]
            for word in range(BIT_TABLE_SIZE // 16):
                current[word - start] = sum(b << i for i, b in enumerate(bits[word * 16 : word * 16 + 16]))
            return
        memory = self._regs.get((unit, table))
        if memory is not None:
            free = FIRST_FREE[table]
            current[free - start : TABLE_SIZE - start] = memory[free:TABLE_SIZE]
        values = plant.values()
        values["speed_setpoint"] = plant.speed_setpoint
        values["status"] = plant.running | plant.high_temperature << 1 | plant.high_vibration << 2
        for entry in REGISTER_MAP:
            if entry.table != table:
                continue
            value: float | str = f"PUMP-{unit:02d}" if entry.source == "name" else values[entry.source] * entry.scale
            kind = entry.kind
            if kind in ("int16", "uint16", "uint32", "int64"):
                value = round(float(value))
            regs = encode(value, kind, byte_order=entry.byte_order, word_order=entry.word_order, length=entry.length)
            current[entry.address - start : entry.address - start + len(regs)] = regs


# -- command line: python -m hil modbus-plc -------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15020)
    parser.add_argument("--unit-ids", default="1", help="comma-separated unit ids, one pump each")
    parser.add_argument("--bearing-wear", type=float, default=0.0, help="bearing wear per hour (1.0 = failure)")
    parser.add_argument(
        "--rtu",
        metavar="PORT",
        default=None,
        help="serve Modbus RTU on this serial port instead of TCP; 'pty' makes a socat pty pair and prints "
        "the end to open from the gateway",
    )
    parser.add_argument("--baudrate", type=int, default=19200)
    parser.add_argument("--parity", choices=("N", "E", "O"), default="E", help="RTU parity (a pty accepts only N)")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    parser.add_argument("--silent-units", default="", help="comma-separated RTU unit ids that never answer")


def _units(text: str) -> tuple[int, ...]:
    return tuple(int(u) for u in text.split(",") if u.strip())


async def _serve(args: argparse.Namespace) -> None:
    from hil.pty import PtyPair  # noqa: PLC0415

    units, silent = _units(args.unit_ids), _units(args.silent_units)
    async with contextlib.AsyncExitStack() as stack:
        if args.rtu is None:
            plc = await stack.enter_async_context(ModbusPlc(host=args.host, port=args.port, unit_ids=units))
            print(f"modbus PLC: units {', '.join(map(str, units))} on {args.host}:{plc.port}", flush=True)
        else:
            path, where = str(args.rtu), f"on {args.rtu}"
            if path == "pty":
                pair = await stack.enter_async_context(PtyPair())
                path, where = str(pair.instrument), f"open {pair.device} from the gateway"
            plc = await stack.enter_async_context(
                ModbusPlc(
                    serial_port=path,
                    unit_ids=units,
                    silent_units=silent,
                    baudrate=args.baudrate,
                    parity=args.parity,
                    stopbits=args.stopbits,
                )
            )
            line = f"{args.baudrate} 8{args.parity}{args.stopbits}"
            print(f"modbus PLC (RTU {line}): units {', '.join(map(str, units))}; {where}", flush=True)
        for plant in plc.plants.values():
            plant.degrade_bearing(args.bearing_wear)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0
