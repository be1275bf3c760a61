"""Modbus configuration: the examples of docs/drivers/modbus.md load, and RTU mistakes are reported at
FILE:LINE with the key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avila_edge.config import parse_config
from avila_edge.core import ConfigError
from avila_edge.driver import DriverPlugin, load_plugins
from drivers.modbus.bus import LineSettings
from drivers.modbus.config import ModbusAddress, ModbusConnection
from drivers.modbus.planner import plan

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "drivers" / "modbus.md"


@pytest.fixture(scope="module")
def plugins() -> dict[str, DriverPlugin]:
    return load_plugins()


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_rtu_example_is_a_complete_site_of_two_devices_sharing_one_port(plugins: dict[str, DriverPlugin]) -> None:
    (text,) = [b for b in yaml_blocks() if b.startswith("site:")]
    cfg = parse_config(text, filename="modbus.md", plugins=plugins)
    conns = [d.connection for d in cfg.devices]
    assert all(isinstance(c, ModbusConnection) and c.transport == "rtu" for c in conns)
    assert len({LineSettings.of(c) for c in conns}) == 1  # one bus
    assert [c.unit_id for c in conns] == [1, 2]
    assert cfg.devices[0].timing.timeout == 0.2
    for device in cfg.devices:
        assert all(isinstance(p.address, ModbusAddress) for p in device.points)
        assert plan(device)


def test_the_tcp_example_loads_too(plugins: dict[str, DriverPlugin]) -> None:
    (text,) = [b for b in yaml_blocks() if b.startswith("devices:")]
    site = "site: {id: s1}\nassets: [{id: pump1}, {id: pump2}]\n" + text
    (device,) = parse_config(site, filename="modbus.md", plugins=plugins).devices
    assert device.connection.transport == "tcp"
    assert device.connection.host == "192.0.2.10"


BROKEN = """\
site: {id: s1}
assets: [{id: pump1}]
devices:
  - id: bus1
    driver: modbus
    connection:
      transport: rtu
      host: 192.0.2.1
      port: /dev/ttyUSB0
      baudrate: 9601
      parity: X
      stopbits: 3
      bytesize: 6
      unit_id: 0
    points:
      - {id: pump1/a, address: {table: holding, address: 0, unit_id: 248}}
  - id: bus2
    driver: modbus
    connection:
      transport: rtu
      port: 502
    points:
      - {id: pump1/b, address: {table: holding, address: 0}}
  - id: tcp1
    driver: modbus
    connection:
      transport: serial
      port: /dev/ttyUSB1
    points:
      - {id: pump1/c, address: {table: holding, address: 0}}
  - id: tcp2
    driver: modbus
    connection:
      port: 5020
    points:
      - {id: pump1/d, address: {table: holding, address: 0}}
"""


def test_rtu_mistakes_are_reported_at_file_and_line_with_the_key_path(plugins: dict[str, DriverPlugin]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BROKEN, filename="site.yaml", plugins=plugins)
    issues = [str(i) for i in caught.value.issues]
    expected = [
        ("site.yaml:11:", "devices[0].connection.parity", "use one of E, N, O"),
        ("site.yaml:27:", "devices[2].connection.transport", "rtu"),
    ]
    for where, path, text in expected:
        assert any(i.startswith(where) and path in i and text in i for i in issues), (where, path, text, issues)


def test_rtu_cross_field_mistakes_are_reported_at_their_lines(plugins: dict[str, DriverPlugin]) -> None:
    text = BROKEN.replace("      parity: X\n", "").replace("      transport: serial\n", "")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, filename="site.yaml", plugins=plugins)
    issues = [str(i) for i in caught.value.issues]
    expected = [
        ("site.yaml:8:", "devices[0].connection.host", "rtu has no host"),
        ("site.yaml:10:", "devices[0].connection.baudrate", "use one of 1200"),
        ("site.yaml:11:", "devices[0].connection.stopbits", "use 1 or 2"),
        ("site.yaml:12:", "devices[0].connection.bytesize", "use 8"),
        ("site.yaml:13:", "devices[0].connection.unit_id", "between 1 and 247"),
        ("site.yaml:15:", "devices[0].points[0].address.unit_id", "between 1 and 247"),
        ("site.yaml:20:", "devices[1].connection.port", "serial device path"),
        ("site.yaml:25:", "devices[2].connection.host", "tcp needs the device's host"),  # at connection:
        ("site.yaml:26:", "devices[2].connection.port", "expected a whole number, got text"),
        ("site.yaml:31:", "devices[3].connection.host", "tcp needs the device's host"),
    ]
    for where, path, text_part in expected:
        assert any(i.startswith(where) and path in i and text_part in i for i in issues), (
            where,
            path,
            text_part,
            issues,
        )
