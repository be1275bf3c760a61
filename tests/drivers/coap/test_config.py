"""CoAP configuration: the examples of docs/drivers/coap.md load, and mistakes are reported at
FILE:LINE with the key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import drivers.coap
from avila_edge.config import parse_config
from avila_edge.core import ConfigError
from avila_edge.driver import DriverPlugin, load_plugins
from drivers.coap.config import CoapAddress, CoapConnection

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "drivers" / "coap.md"


def plugins() -> dict[str, DriverPlugin]:
    return {**load_plugins(), "coap": drivers.coap.plugin}


def doc_examples() -> list[str]:
    """The complete site configurations quoted in the docs page (yaml blocks starting with 'site:')."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [b for b in blocks if b.startswith(("site:", "#"))]


def test_the_docs_page_has_a_complete_example_for_each_mode() -> None:
    modes = set()
    for text in doc_examples():
        cfg = parse_config(text, filename="coap.md", plugins=plugins())
        modes |= {d.connection.mode for d in cfg.devices if d.driver == "coap"}
    assert modes == {"client", "server"}


@pytest.mark.parametrize("index", range(2))
def test_every_docs_example_loads_into_typed_config(index: int) -> None:
    text = doc_examples()[index]
    cfg = parse_config(text, filename="coap.md", plugins=plugins())
    for device in cfg.devices:
        assert isinstance(device.connection, CoapConnection)
        assert all(isinstance(p.address, CoapAddress) for p in device.points)


def test_the_client_example_reads_durations_and_sizes_with_units() -> None:
    cfg = parse_config(doc_examples()[0], filename="coap.md", plugins=plugins())
    (node,) = [d for d in cfg.devices if d.connection.mode == "client"]
    assert node.connection.max_silence == 120.0
    assert node.connection.max_payload == 4096


BROKEN = """\
site: {id: s1}
assets: [{id: pump1}, {id: pump2}, {id: pump3}]
devices:
  - id: node1
    driver: coap
    connection:
      mode: client
      port: 70000
    points:
      - {id: pump1/temp, address: {}}
      - {id: pump1/flow, address: {path: /senml, format: senml}}
      - {id: pump1/rpm, address: {path: /status, value_path: speed}}
  - id: ingest1
    driver: coap
    connection:
      mode: server
      names:
        "urn:dev:pump1:flow": pump1/nothing
    points:
      - {id: pump2/flow, address: {path: /x}}
      - {id: pump2/temp, address: {name: "urn:dev:pump2:temp"}, writable: true}
  - id: node2
    driver: coap
    connection: {host: 127.0.0.1, mode: listen}
    points:
      - {id: pump3/flow, address: {path: /flow, colour: red}}
"""


def test_mistakes_are_reported_at_file_and_line_with_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BROKEN, filename="site.yaml", plugins=plugins())
    issues = [str(i) for i in caught.value.issues]
    expected = [
        ("site.yaml:6:", "devices[0].connection.host", "client mode needs the node's host"),
        ("site.yaml:8:", "devices[0].connection.port", "between 1 and 65535"),
        ("site.yaml:10:", "devices[0].points[0].address.path", "needs the resource path"),
        ("site.yaml:11:", "devices[0].points[1].address.name", "needs the record's resolved name"),
        ("site.yaml:12:", "devices[0].points[2].address.value_path", "must start with '$'"),
        ("site.yaml:17:", "devices[1].connection.names", "'pump1/nothing', which is not a point of this device"),
        ("site.yaml:20:", "devices[1].points[0].address.path", "path is for mode: client"),
        ("site.yaml:20:", "devices[1].points[0].address", "no SenML name feeds this point"),
        ("site.yaml:21:", "devices[1].points[1].writable", "cannot be written"),
        ("site.yaml:24:", "devices[2].connection.mode", "use one of client, server"),
        ("site.yaml:26:", "devices[2].points[0].address.colour", "unknown key"),
    ]
    for where, path, text in expected:
        matching = [i for i in issues if i.startswith(where) and path in i and text in i]
        assert matching, f"no issue {where} {path} {text!r} in:\n" + "\n".join(issues)
    assert len(issues) == len(expected), "\n".join(issues)
