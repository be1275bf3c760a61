"""The serial port, through pyserial-asyncio-fast: the only module that imports a serial library.

Every library error leaves as a ``LinkDown`` (``raise ... from exc``) naming the device, the port
and the operation; a write that does not drain within the device's timeout is a ``Timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import termios
from typing import Final, Protocol

import serial  # type: ignore[import-untyped]
import serial_asyncio_fast

from avila_edge.core import LinkDown, Timeout
from drivers.serial.config import SerialConnection

logger = logging.getLogger(__name__)

READ_SIZE: Final = 4096
_PARITY: Final = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}


class Port(Protocol):
    """An open serial port."""

    async def read(self) -> bytes:
        """The next bytes that arrived (at least one); ``LinkDown`` when the port is gone."""
        ...

    async def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialPort:
    """One open port as a pair of asyncio streams."""

    def __init__(
        self, device: str, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.device = device
        self.path = path
        self._reader = reader
        self._writer = writer
        self._timeout = timeout

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(READ_SIZE)
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(self.device, f"read {self.path}", str(exc) or type(exc).__name__) from exc
        if not data:
            raise LinkDown(self.device, f"read {self.path}", "the port was closed")
        return data

    async def write(self, data: bytes) -> None:
        op = f"write {self.path}"
        if self._writer.transport.is_closing():
            raise LinkDown(self.device, op, "the port is closed")
        try:
            self._writer.write(data)
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise Timeout(self.device, op, f"{len(data)} byte(s) not sent within {self._timeout:g} s") from exc
        except (serial.SerialException, OSError, ConnectionError) as exc:
            raise LinkDown(self.device, op, str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        self._writer.close()


async def open_port(device: str, conn: SerialConnection, *, deadline: float) -> SerialPort:
    """Open ``conn.port`` with its line settings; stale input waiting in the port is discarded."""
    op = f"open {conn.port}"
    within = max(deadline, 1.0)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                loop=loop,
                url=conn.port,
                baudrate=conn.baudrate,
                bytesize=conn.bytesize,
                parity=_PARITY[conn.parity],
                stopbits=conn.stopbits,
            )
    except TimeoutError as exc:
        raise LinkDown(device, op, f"the port did not open within {within:g} s") from exc
    except (serial.SerialException, OSError, ValueError, termios.error) as exc:
        detail = str(exc) or type(exc).__name__
        if "Invalid argument" in detail:
            detail += (
                f" (the port refused {conn.baudrate} baud, {conn.bytesize} data bits, "
                f"parity {conn.parity}, {conn.stopbits:g} stop bits)"
            )
        raise LinkDown(device, op, detail) from exc
    port: serial.Serial | None = writer.transport.get_extra_info("serial")
    if port is not None:
        try:
            port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            writer.close()
            raise LinkDown(device, op, str(exc)) from exc
    return SerialPort(device, conn.port, reader, writer, deadline)


__all__ = ["Port", "SerialPort", "open_port"]
