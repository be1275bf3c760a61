from __future__ import annotations

from typing import Literal

import msgspec
import pytest

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock
from avila_edge.driver import Driver, DriverPlugin


class FakeConnection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int = 502


class FakeAddress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    table: Literal["holding", "input"]
    address: int


def _create(device: DeviceConfig, clock: Clock) -> Driver:
    raise RuntimeError("the fake driver only exists for config tests")


def _check(device: DeviceConfig) -> list[tuple[str, str]]:
    return [
        (f"points[{i}].address.address", "address must be below 65536")
        for i, p in enumerate(device.points)
        if p.address.address > 65535
    ]


@pytest.fixture
def plugins() -> dict[str, DriverPlugin]:
    return {"fake": DriverPlugin("fake", FakeConnection, FakeAddress, _create, _check)}
