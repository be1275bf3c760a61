"""Serial configuration: the examples of docs/drivers/serial.md load, and mistakes are reported at
FILE:LINE with the key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import drivers.serial
from avila_edge.config import parse_config
from avila_edge.core import ConfigError
from avila_edge.driver import DriverPlugin, load_plugins
from drivers.serial.config import SerialAddress, SerialConnection
from drivers.serial.mapping import Routes

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "drivers" / "serial.md"


def plugins() -> dict[str, DriverPlugin]:
    return {**load_plugins(), "serial": drivers.serial.plugin}


def doc_examples() -> list[str]:
    """The complete site configurations quoted in the docs page (yaml blocks starting with 'site:')."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [b for b in blocks if b.startswith("site:")]


def test_the_docs_page_has_a_complete_nmea_and_a_line_example() -> None:
    framings = set()
    for text in doc_examples():
        cfg = parse_config(text, filename="serial.md", plugins=plugins())
        framings |= {d.connection.framing for d in cfg.devices if d.driver == "serial"}
    assert framings == {"nmea", "line"}


@pytest.mark.parametrize("index", range(2))
def test_every_docs_example_loads_into_typed_config(index: int) -> None:
    cfg = parse_config(doc_examples()[index], filename="serial.md", plugins=plugins())
    for device in cfg.devices:
        assert isinstance(device.connection, SerialConnection)
        assert all(isinstance(p.address, SerialAddress) for p in device.points)
        Routes(device)  # compiles


def test_the_line_example_reads_escapes_units_and_sizes() -> None:
    cfg = parse_config(doc_examples()[1], filename="serial.md", plugins=plugins())
    (dev,) = cfg.devices
    conn: SerialConnection = dev.connection
    assert conn.terminator_bytes == b"\r\n"
    assert conn.poll_bytes == b"\r"
    assert conn.max_line == 256
    assert conn.idle_timeout == 3.0
    assert dev.timing.timeout == 0.5


BROKEN = r"""
site: {id: s1}
assets: [{id: gps}, {id: pump1}]
devices:
  - id: gps1
    driver: serial
    connection:
      port: /dev/ttyUSB0
      baudrate: 0
      stopbits: 3
      framing: nmea
      encoding: utf-8
    points:
      - {id: gps/lat, type: int16, address: {sentence: GGA, field: latitude}}
      - {id: gps/x, address: {sentence: GGA, field: height}}
      - {id: gps/air, address: {sentence: XDR}}
      - {id: gps/t, address: {sentence: GGA, talker: gps, field: 0}}
  - id: meter1
    driver: serial
    connection:
      port: /dev/ttyUSB1
      parity: sometimes
      pattern: '(?P<flow>[0-9.]+'
      poll: "R\r"
      idle_timeout: 1s
    timing: {poll_interval: 2s}
    points:
      - {id: pump1/flow, address: {group: flow}}
      - {id: pump1/temp, address: {pattern: 'T=(?P<t>\S+)', group: temp}}
      - {id: pump1/sp, writable: true, address: {field: 2}}
      - {id: pump1/mode, address: {field: 3, command: "MODE {value}"}}
      - {id: pump1/rate, writable: true, address: {field: 4, command: "RATE {speed}"}}
      - {id: pump1/x, address: {sentence: GGA}}
      - {id: pump1/y, address: {}}
  - id: meter2
    driver: serial
    connection: {port: /dev/ttyUSB2, framing: regex, frame: 'x*'}
    points:
      - {id: pump1/z, address: {field: 0}}
"""


def test_mistakes_are_reported_at_file_and_line_with_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BROKEN, filename="site.yaml", plugins=plugins())
    issues = [str(i) for i in caught.value.issues]
    expected = [
        ("site.yaml:9:", "devices[0].connection.baudrate", "must be at least 1"),
        ("site.yaml:22:", "devices[1].connection.parity", "use one of even, mark, none, odd, space"),
        ("site.yaml:37:", "devices[2].connection.frame", "matches an empty frame"),
    ]
    for where, path, text in expected:
        assert any(i.startswith(where) and path in i and text in i for i in issues), (where, path, text, issues)


def test_cross_field_mistakes_are_reported_at_their_lines() -> None:
    text = BROKEN.replace("      baudrate: 0\n", "").replace("      parity: sometimes\n", "")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, filename="site.yaml", plugins=plugins())
    issues = [str(i) for i in caught.value.issues]
    expected = [
        ("site.yaml:9:", "devices[0].connection.stopbits", "use one of 1, 1.5, 2"),
        ("site.yaml:11:", "devices[0].connection.encoding", "NMEA 0183 is ASCII"),
        ("site.yaml:13:", "devices[0].points[0].type", "GGA latitude is a number with decimals"),
        ("site.yaml:14:", "devices[0].points[1].address.field", "GGA has no field 'height'"),
        ("site.yaml:15:", "devices[0].points[2].address.transducer", "names its transducer"),
        ("site.yaml:16:", "devices[0].points[3].address.talker", "not a talker id"),
        ("site.yaml:16:", "devices[0].points[3].address.field", "count from 1"),
        ("site.yaml:21:", "devices[1].connection.pattern", "not a valid regular expression"),
        ("site.yaml:23:", "devices[1].connection.idle_timeout", "not longer than timing.poll_interval"),
        ("site.yaml:27:", "devices[1].points[1].address.group", "no group named 'temp'"),
        ("site.yaml:28:", "devices[1].points[2].writable", "needs address.command"),
        ("site.yaml:29:", "devices[1].points[3].writable", "set writable: true"),
        ("site.yaml:30:", "devices[1].points[4].address.command", "cannot take"),
        ("site.yaml:31:", "devices[1].points[5].address.sentence", "framing: nmea"),
        ("site.yaml:32:", "devices[1].points[6].address", "say where the value is"),
        ("site.yaml:35:", "devices[2].connection.frame", "matches an empty frame"),
    ]
    assert not any("devices[1].points[0]" in i for i in issues)  # the broken pattern is reported once, above
    for where, path, text_part in expected:
        assert any(i.startswith(where) and path in i and text_part in i for i in issues), (
            where,
            path,
            text_part,
            issues,
        )
