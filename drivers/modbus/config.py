"""Frozen configuration of a Modbus device connection and of one point's address.

Both are ``gc=False`` (16 bytes less per point; they hold only strings and numbers, so they can
never be part of a reference cycle: see ``avila_edge.config.model``)."""

from __future__ import annotations

from typing import Literal

import msgspec

Table = Literal["holding", "input", "coil", "discrete"]
Order = Literal["big", "little"]
TransportKind = Literal["tcp", "rtu"]
Parity = Literal["N", "E", "O"]

MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000
TCP_PORT = 502


class ModbusConnection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Where the device is. ``max_gap`` unused registers (x16 for bits) may be read to merge two blocks.

    ``transport: tcp`` (the default) needs ``host`` and a TCP ``port``. ``transport: rtu`` needs ``port``
    as a serial device path and the line settings ``baudrate``, ``parity`` (``N``, ``E``, ``O``),
    ``stopbits`` and ``bytesize``; every device naming the same ``port`` shares one bus.
    """

    transport: TransportKind = "tcp"
    host: str | None = None
    port: int | str = TCP_PORT
    unit_id: int = 1
    baudrate: int = 19200
    parity: Parity = "E"
    stopbits: int = 1
    bytesize: int = 8
    max_gap: int = 8
    max_block_registers: int = MAX_READ_REGISTERS
    max_block_bits: int = MAX_READ_BITS


class ModbusAddress(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A point's place in the device: table and 0-based protocol address (register 40001 is holding 0)."""

    table: Table
    address: int
    unit_id: int | None = None
    bit: int | None = None
    length: int | None = None
    byte_order: Order = "big"
    word_order: Order = "big"
