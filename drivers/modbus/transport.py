"""The only module that speaks pymodbus: requests in, registers out, library errors translated.

``TcpTransport`` is one Modbus TCP connection. ``SerialLink`` is one serial port speaking Modbus RTU;
it is shared by every device on that bus through ``drivers.modbus.bus``, so its requests name the
device that asks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import termios
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from avila_edge.core import DeviceRejected, DriverError, LinkDown, ProtocolViolation, Timeout
from drivers.modbus.codec import rtu_crc_fails, rtu_odd_register_reply, tcp_odd_register_reply
from drivers.modbus.config import Parity, Table

logger = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class Transport(Protocol):
    """What the driver needs from a Modbus link (TCP, or one device's share of an RTU bus)."""

    @property
    def connected(self) -> bool: ...

    @property
    def shared_bus(self) -> bool:
        """True when other devices wait while this one's request is on the line (RTU): a unit that
        does not answer is then skipped for a while instead of being asked every poll."""
        ...

    def after_timeout(self) -> None:
        """Make sure a late reply cannot be taken for the next request's."""
        ...

    async def connect(self) -> None: ...

    def close(self) -> None: ...

    async def read(self, unit: int, table: Table, start: int, count: int) -> list[int] | list[bool]: ...

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None: ...

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None: ...


class CrcError(ProtocolViolation):
    """A reply arrived but failed its CRC check (noise on the line, wrong line settings)."""

    @property
    def kind(self) -> str:
        return "crc_error"


READ_FUNCTIONS: dict[Table, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
"""The function code of a read of each table, which its reply must carry."""


def _check_function(device: str, what: str, reply: object, expected: int) -> None:
    """A well-framed reply for another function is not the answer (pymodbus hands it back as one)."""
    function = int(getattr(reply, "function_code", 0))
    if function != expected:
        raise ProtocolViolation(device, what, f"the reply is for function {function}, not {expected}")


class _ClientLink:
    """Requests over one pymodbus client, library errors translated into the gateway's."""

    endpoint: str
    _client: Any

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def _connect(self, device: str, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                ok = await self._client.connect()
        except TimeoutError as exc:
            raise LinkDown(device, f"connect {self.endpoint}", f"no answer within {within:g} s") from exc
        except (OSError, termios.error) as exc:
            detail = str(exc) or type(exc).__name__
            if "Invalid argument" in detail:
                detail += f" (the port refused the line settings {self._settings})"
            raise LinkDown(device, f"connect {self.endpoint}", detail) from exc
        if not ok:
            raise LinkDown(device, f"connect {self.endpoint}", self._refused)

    _refused = "connection refused or unreachable"
    _settings = ""

    _odd_reply = False

    def _reply_problem(self) -> str:
        """What was wrong with the last reply that the library accepted anyway ('' if nothing)."""
        odd, self._odd_reply = self._odd_reply, False
        return f"odd byte count in a register reply from {self.endpoint}" if odd else ""

    def close(self) -> None:
        self._client.close()

    async def read_as(
        self, device: str, within: float, unit: int, table: Table, start: int, count: int
    ) -> list[int] | list[bool]:
        c = self._client
        call = {
            "holding": c.read_holding_registers,
            "input": c.read_input_registers,
            "coil": c.read_coils,
            "discrete": c.read_discrete_inputs,
        }[table]
        what = f"read unit {unit} {table} {start}..{start + count - 1}"
        response = await self._request(device, within, what, lambda: call(start, count=count, device_id=unit))
        _check_function(device, what, response, READ_FUNCTIONS[table])
        if problem := self._reply_problem():
            raise ProtocolViolation(device, what, problem)
        if table in ("coil", "discrete"):
            bits = list(response.bits)
            if len(bits) < count:
                raise ProtocolViolation(device, what, f"{len(bits)} bits in the reply, {count} asked")
            return bits[:count]
        registers = list(response.registers)
        if len(registers) != count:
            raise ProtocolViolation(device, what, f"{len(registers)} registers in the reply, {count} asked")
        return registers

    async def write_registers_as(
        self, device: str, within: float, unit: int, address: int, values: Sequence[int]
    ) -> None:
        what = f"write unit {unit} holding {address}..{address + len(values) - 1}"
        c = self._client
        if len(values) == 1:
            reply = await self._request(
                device, within, what, lambda: c.write_register(address, values[0], device_id=unit)
            )
            _check_function(device, what, reply, 6)
        else:
            reply = await self._request(
                device, within, what, lambda: c.write_registers(address, list(values), device_id=unit)
            )
            _check_function(device, what, reply, 16)

    async def write_coils_as(self, device: str, within: float, unit: int, address: int, values: Sequence[bool]) -> None:
        what = f"write unit {unit} coil {address}..{address + len(values) - 1}"
        c = self._client
        if len(values) == 1:
            reply = await self._request(device, within, what, lambda: c.write_coil(address, values[0], device_id=unit))
            _check_function(device, what, reply, 5)
        else:
            reply = await self._request(
                device, within, what, lambda: c.write_coils(address, list(values), device_id=unit)
            )
            _check_function(device, what, reply, 15)

    def _no_answer(self, device: str, what: str, within: float) -> DriverError:
        return Timeout(device, what, f"no answer within {within:g} s")

    async def _request(self, device: str, within: float, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException  # noqa: PLC0415

        if not self.connected:
            raise LinkDown(device, what, f"not connected to {self.endpoint}")
        try:
            async with asyncio.timeout(within * 1.5):
                response = await call()
        except TimeoutError as exc:
            raise self._no_answer(device, what, within) from exc
        except ConnectionException as exc:
            raise LinkDown(device, what, f"connection to {self.endpoint} lost") from exc
        except ModbusException as exc:
            _reraise_cancellation(exc)
            if not self.connected:
                raise LinkDown(device, what, f"connection to {self.endpoint} lost") from exc
            if "No response" in str(exc):
                raise self._no_answer(device, what, within) from exc
            raise ProtocolViolation(device, what, str(exc)) from exc
        except (OSError, ValueError, IndexError, struct.error) as exc:
            raise ProtocolViolation(device, what, f"malformed reply: {exc}") from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceRejected(device, what, f"exception {code} {name}")
        return response


class TcpTransport(_ClientLink):
    """One Modbus TCP connection; one request in flight at a time."""

    shared_bus = False

    def __init__(self, device: str, host: str, port: int, *, timeout: float) -> None:
        from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415 - imported only when used

        self.device = device
        self.endpoint = f"{host}:{port}"
        self.timeout = timeout
        self._client = AsyncModbusTcpClient(
            host,
            port=port,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            name=f"modbus:{device}",
            trace_packet=self._inspect,
        )
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        await self._connect(self.device, self.timeout)

    def _inspect(self, sending: bool, data: bytes) -> bytes:
        """Sees every frame sent and every receive buffer: notes a register reply with half a register."""
        if sending:
            self._odd_reply = False
        elif tcp_odd_register_reply(data):
            self._odd_reply = True
        return data

    def after_timeout(self) -> None:
        self.close()  # a fresh connection: the late reply goes with the old one

    async def read(self, unit: int, table: Table, start: int, count: int) -> list[int] | list[bool]:
        async with self._lock:
            return await self.read_as(self.device, self.timeout, unit, table, start, count)

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None:
        async with self._lock:
            await self.write_registers_as(self.device, self.timeout, unit, address, values)

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None:
        async with self._lock:
            await self.write_coils_as(self.device, self.timeout, unit, address, values)


class SerialLink(_ClientLink):
    """One serial port speaking Modbus RTU. The caller (the bus) keeps one request in flight and the
    inter-frame silence; each request carries the asking device's name and timeout."""

    _refused = "the serial port cannot be opened"

    def __init__(self, port: str, *, baudrate: int, parity: Parity, stopbits: int, bytesize: int) -> None:
        from pymodbus.client import AsyncModbusSerialClient  # noqa: PLC0415 - imported only when used

        self.endpoint = port
        self._settings = f"{baudrate} {bytesize}{parity}{stopbits}"
        self._crc_failed = False
        self._odd_reply = False
        self._client = AsyncModbusSerialClient(
            port,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            bytesize=bytesize,
            timeout=1.0,
            retries=0,
            reconnect_delay=0,
            name=f"modbus-rtu:{port}",
            trace_packet=self._inspect,
        )

    async def connect_as(self, device: str, within: float) -> None:
        if not await asyncio.to_thread(os.path.exists, self.endpoint):
            raise LinkDown(device, f"connect {self.endpoint}", "no such serial device (adapter unplugged?)")
        await self._connect(device, within)

    def set_timeout(self, timeout: float) -> None:
        """The reply deadline of the next request (devices on one bus may each have their own)."""
        self._client.ctx.comm_params.timeout_connect = timeout

    def discard_input(self) -> None:
        """Forget bytes received so far (the start of a late reply)."""
        self._client.ctx.recv_buffer = b""

    def _inspect(self, sending: bool, data: bytes) -> bytes:
        """Sees every frame sent and every receive buffer: notes a complete reply with a bad CRC,
        which the library would silently drop (and the request would only time out)."""
        if sending:
            self._crc_failed = False
            self._odd_reply = False
        elif rtu_crc_fails(data):
            self._crc_failed = True
        elif rtu_odd_register_reply(data):
            self._odd_reply = True
        return data

    def _no_answer(self, device: str, what: str, within: float) -> DriverError:
        if self._crc_failed:
            self._crc_failed = False
            return CrcError(device, what, "the reply failed its CRC check")
        return super()._no_answer(device, what, within)


def _reraise_cancellation(exc: BaseException) -> None:
    """pymodbus turns a cancellation that lands inside a request into a ModbusException; undo that,
    so stopping the gateway never leaves a driver polling."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
