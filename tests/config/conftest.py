from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Literal

import msgspec
import pytest

from avila_edge.config import parse_config
from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock, ConfigError
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


FAKE = DriverPlugin("fake", FakeConnection, FakeAddress, _create, _check)

# A small valid site; tests change one line of it and look at what the loader says.
VALID = """\
site:
  id: plant-a
  name: Plant A
state_dir: state
journal:
  max_bytes: 64MiB
  max_age: 7d
http: {host: 127.0.0.1, port: 0}
logging: {format: json, level: debug}
assets:
  - id: line1
  - id: pump1
    parent: line1
devices:
  - id: plc1
    driver: fake
    connection: {host: 127.0.0.1, port: 5020}
    timing:
      poll_interval: 500ms
      timeout: 2s
    points:
      - id: pump1/flow
        address: {table: holding, address: 0}
        type: float32
        unit: m3/h
        deadband: 0.5
      - id: pump1/running
        address: {table: input, address: 4}
        type: bool
        poll_interval: 5m
"""


@pytest.fixture
def plugins() -> dict[str, DriverPlugin]:
    return {"fake": FAKE}


@pytest.fixture
def problems(plugins: dict[str, DriverPlugin]) -> Callable[[str], list[str]]:
    """The issues the loader reports for a text, as the CLI prints them (the text must be invalid)."""

    def run(text: str) -> list[str]:
        with pytest.raises(ConfigError) as info:
            parse_config(textwrap.dedent(text), filename="site.yaml", plugins=plugins)
        assert info.value.issues, "a ConfigError carries at least one issue"
        return [str(i) for i in info.value.issues]

    return run


@pytest.fixture
def valid() -> str:
    """The text of a small valid site (see ``VALID``)."""
    return VALID
