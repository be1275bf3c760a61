"""The only module that speaks pymodbus: requests in, registers out, library errors translated."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from typing import Any, Protocol

from avila_edge.core import DeviceRejected, LinkDown, ProtocolViolation, Timeout
from drivers.modbus.config import Table

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
    """What the driver needs from a Modbus link (TCP here; RTU over serial later)."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    def close(self) -> None: ...

    async def read(self, unit: int, table: Table, start: int, count: int) -> list[int] | list[bool]: ...

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None: ...

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None: ...


class TcpTransport:
    """One Modbus TCP connection; one request in flight at a time."""

    def __init__(self, device: str, host: str, port: int, *, timeout: float) -> None:
        from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415 - imported only when used

        self.device = device
        self.endpoint = f"{host}:{port}"
        self.timeout = timeout
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=timeout, retries=0, reconnect_delay=0, name=f"modbus:{device}"
        )
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                ok = await self._client.connect()
        except TimeoutError as exc:
            raise LinkDown(self.device, f"connect {self.endpoint}", f"no answer within {self.timeout:g} s") from exc
        except OSError as exc:
            raise LinkDown(self.device, f"connect {self.endpoint}", str(exc)) from exc
        if not ok:
            raise LinkDown(self.device, f"connect {self.endpoint}", "connection refused or unreachable")

    def close(self) -> None:
        self._client.close()

    async def read(self, unit: int, table: Table, start: int, count: int) -> list[int] | list[bool]:
        c = self._client
        call = {
            "holding": c.read_holding_registers,
            "input": c.read_input_registers,
            "coil": c.read_coils,
            "discrete": c.read_discrete_inputs,
        }[table]
        what = f"read unit {unit} {table} {start}..{start + count - 1}"
        response = await self._request(what, call(start, count=count, device_id=unit))
        if table in ("coil", "discrete"):
            bits = list(response.bits)
            if len(bits) < count:
                raise ProtocolViolation(self.device, what, f"{len(bits)} bits in the reply, {count} asked")
            return bits[:count]
        registers = list(response.registers)
        if len(registers) != count:
            raise ProtocolViolation(self.device, what, f"{len(registers)} registers in the reply, {count} asked")
        return registers

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None:
        what = f"write unit {unit} holding {address}..{address + len(values) - 1}"
        if len(values) == 1:
            await self._request(what, self._client.write_register(address, values[0], device_id=unit))
        else:
            await self._request(what, self._client.write_registers(address, list(values), device_id=unit))

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None:
        what = f"write unit {unit} coil {address}..{address + len(values) - 1}"
        if len(values) == 1:
            await self._request(what, self._client.write_coil(address, values[0], device_id=unit))
        else:
            await self._request(what, self._client.write_coils(address, list(values), device_id=unit))

    async def _request(self, what: str, call: Any) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException  # noqa: PLC0415

        async with self._lock:
            if not self.connected:
                call.close()
                raise LinkDown(self.device, what, f"not connected to {self.endpoint}")
            try:
                async with asyncio.timeout(self.timeout * 1.5):
                    response = await call
            except TimeoutError as exc:
                raise Timeout(self.device, what, f"no answer within {self.timeout:g} s") from exc
            except ConnectionException as exc:
                raise LinkDown(self.device, what, f"connection to {self.endpoint} lost") from exc
            except ModbusException as exc:
                _reraise_cancellation(exc)
                if not self.connected:
                    raise LinkDown(self.device, what, f"connection to {self.endpoint} lost") from exc
                if "No response" in str(exc):
                    raise Timeout(self.device, what, f"no answer within {self.timeout:g} s") from exc
                raise ProtocolViolation(self.device, what, str(exc)) from exc
            except (OSError, ValueError, IndexError, struct.error) as exc:
                raise ProtocolViolation(self.device, what, f"malformed reply: {exc}") from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceRejected(self.device, what, f"exception {code} {name}")
        return response


def _reraise_cancellation(exc: BaseException) -> None:
    """pymodbus turns a cancellation that lands inside a request into a ModbusException; undo that,
    so stopping the gateway never leaves a driver polling."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
