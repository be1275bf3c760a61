"""Frozen configuration of a Modbus device connection and of one point's address."""

from __future__ import annotations

from typing import Literal

import msgspec

Table = Literal["holding", "input", "coil", "discrete"]
Order = Literal["big", "little"]

MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


class ModbusConnection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the device is. ``max_gap`` unused registers (x16 for bits) may be read to merge two blocks."""

    host: str
    port: int = 502
    unit_id: int = 1
    max_gap: int = 8
    max_block_registers: int = MAX_READ_REGISTERS
    max_block_bits: int = MAX_READ_BITS


class ModbusAddress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A point's place in the device: table and 0-based protocol address (register 40001 is holding 0)."""

    table: Table
    address: int
    unit_id: int | None = None
    bit: int | None = None
    length: int | None = None
    byte_order: Order = "big"
    word_order: Order = "big"
