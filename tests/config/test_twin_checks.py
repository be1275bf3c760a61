"""Asset types are checked when the configuration is loaded, with the line of each problem."""

from __future__ import annotations

import pytest

from avila_edge.config import parse_config
from avila_edge.core import ConfigError
from avila_edge.driver import DriverPlugin

BASE = """\
site: {id: s}
asset_types:
  - id: pump
    derived:
      power: flow * pressure
    alarms:
      - {id: hot, value: temperature, kind: high, limit: 80}
    maintenance: {indicator: power, failure_threshold: 10}
    writable:
      speed: {tolerance: 1}
assets:
  - {id: pump1, type: pump}
devices:
  - id: plc
    driver: fake
    connection: {host: h}
    points:
      - {id: pump1/flow, address: {table: holding, address: 0}}
      - {id: pump1/pressure, address: {table: holding, address: 2}}
      - {id: pump1/temperature, address: {table: holding, address: 4}}
      - {id: pump1/speed, address: {table: holding, address: 6}, writable: true}
"""


def problems(text: str, plugins: dict[str, DriverPlugin]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, filename="t.yaml", plugins=plugins)
    return [str(i) for i in info.value.issues]


def test_a_valid_twin_configuration_loads(plugins: dict[str, DriverPlugin]) -> None:
    cfg = parse_config(BASE, filename="t.yaml", plugins=plugins)
    assert cfg.asset_types[0].derived == {"power": "flow * pressure"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("power: flow * pressure", "power: flow * __import__('os')", "t.yaml:5: asset_types[0].derived.power: column"),
        (
            "power: flow * pressure",
            "power: flow * presure",
            "t.yaml:5: asset_types[0].derived.power: value 'presure' is neither",
        ),
        (
            "value: temperature",
            "value: temprature",
            "t.yaml:7: asset_types[0].alarms[0].value: alarm value 'temprature'",
        ),
        ("indicator: power", "indicator: pwr", "t.yaml:8: asset_types[0].maintenance.indicator: indicator 'pwr'"),
        (
            "      speed: {tolerance: 1}",
            "      flow: {tolerance: 1}",
            "t.yaml:10: asset_types[0].writable.flow: 'flow' is not a writable point",
        ),
        (
            "{id: pump1, type: pump}",
            "{id: pump1, type: pmp}",
            "t.yaml:12: assets[0].type: asset type 'pmp' is not declared",
        ),
    ],
)
def test_twin_mistakes_are_named_at_their_line(
    plugins: dict[str, DriverPlugin], old: str, new: str, expected: str
) -> None:
    found = problems(BASE.replace(old, new), plugins)
    assert any(f.startswith(expected) for f in found), found


def test_durations_inside_mappings_of_settings_are_read(plugins: dict[str, DriverPlugin]) -> None:
    cfg = parse_config(
        BASE.replace("speed: {tolerance: 1}", "speed: {tolerance: 1, timeout: 2m}"), filename="t.yaml", plugins=plugins
    )
    assert cfg.asset_types[0].writable["speed"].timeout == 120.0
    found = problems(BASE.replace("speed: {tolerance: 1}", "speed: {tolerance: 1, timeout: soon}"), plugins)
    assert found[0].startswith("t.yaml:10: asset_types[0].writable.speed.timeout: 'soon' is not a duration")
