"""The YAML loader builds frozen typed objects and names file:line and key path for every problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from avila_edge.config import DataType, GatewayConfig, check_config, load_config, parse_config
from avila_edge.core import ConfigError
from avila_edge.driver import DriverPlugin

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


def issues(text: str, plugins: dict[str, DriverPlugin]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), filename="site.yaml", plugins=plugins)
    return [str(i) for i in info.value.issues]


def test_valid_config_becomes_frozen_typed_objects(plugins: dict[str, DriverPlugin], tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(VALID)
    cfg = load_config(path, plugins=plugins)
    assert isinstance(cfg, GatewayConfig)
    assert cfg.site.id == "plant-a"
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.journal.max_bytes == 64 * 2**20
    assert cfg.journal.max_age == 7 * 86400
    dev = cfg.devices[0]
    assert dev.connection.port == 5020
    assert dev.timing.poll_interval == 0.5
    flow, running = dev.points
    assert flow.type is DataType.FLOAT32
    assert flow.address.table == "holding"
    assert running.poll_interval == 300
    assert dev.poll_interval_of(flow) == 0.5
    with pytest.raises(AttributeError):
        cfg.site.id = "x"  # type: ignore[misc]
    assert check_config(path, plugins=plugins) == []


def test_unknown_key_names_line_and_suggests_the_right_one(plugins: dict[str, DriverPlugin]) -> None:
    text = VALID.replace("      poll_interval: 500ms", "      pol_interval: 500ms")
    assert issues(text, plugins) == [
        "site.yaml:19: devices[0].timing.pol_interval: unknown key; did you mean 'poll_interval'?"
    ]


def test_bad_enum_lists_the_allowed_values(plugins: dict[str, DriverPlugin]) -> None:
    text = VALID.replace("type: float32", "type: float")
    (msg,) = issues(text, plugins)
    assert msg.startswith("site.yaml:24: devices[0].points[0].type: 'float' is not allowed; use one of bool, int16")


def test_every_problem_is_reported_at_once(plugins: dict[str, DriverPlugin]) -> None:
    text = (
        VALID.replace("table: input", "table: coil")
        .replace("type: float32", "type: float")
        .replace("port: 5020", "port: fast")
        .replace("max_age: 7d", "max_age: soon")
    )
    found = issues(text, plugins)
    assert found == [
        "site.yaml:7: journal.max_age: 'soon' is not a duration; write seconds or e.g. 250ms, 2s, 5m, 1h, 7d",
        "site.yaml:17: devices[0].connection.port: expected a whole number, got text",
        "site.yaml:24: devices[0].points[0].type: 'float' is not allowed; use one of bool, int16, uint16, int32, "
        "uint32, int64, uint64, float32, float64, string",
        "site.yaml:28: devices[0].points[1].address.table: 'coil' is not allowed; use one of holding, input",
    ]


def test_undeclared_asset_and_duplicate_point_are_named(plugins: dict[str, DriverPlugin]) -> None:
    text = VALID.replace("id: pump1/running", "id: pump1/flow") + (
        "      - id: pump9/speed\n        address: {table: holding, address: 8}\n"
    )
    assert issues(text, plugins) == [
        "site.yaml:27: devices[0].points[1].id: point 'pump1/flow' is already defined on device 'plc1'",
        "site.yaml:31: devices[0].points[2].id: asset 'pump9' is not declared under assets: (declared: line1, pump1)",
    ]


def test_missing_required_key_points_at_the_enclosing_item(plugins: dict[str, DriverPlugin]) -> None:
    text = VALID.replace("    connection: {host: 127.0.0.1, port: 5020}\n", "")
    assert issues(text, plugins) == ["site.yaml:15: devices[0].connection: missing required key"]


def test_unknown_driver_lists_installed_ones(plugins: dict[str, DriverPlugin]) -> None:
    (msg,) = issues(VALID.replace("driver: fake", "driver: profibus"), plugins)
    assert msg == "site.yaml:16: devices[0].driver: unknown driver 'profibus'; installed drivers: fake"


def test_driver_cross_field_check_is_mapped_to_its_line(plugins: dict[str, DriverPlugin]) -> None:
    (msg,) = issues(VALID.replace("address: 4}", "address: 70000}"), plugins)
    assert msg == "site.yaml:28: devices[1].points[1].address.address: address must be below 65536".replace(
        "devices[1]", "devices[0]"
    )


def test_duplicate_key_names_both_lines(plugins: dict[str, DriverPlugin]) -> None:
    text = VALID.replace("  name: Plant A\n", "  name: Plant A\n  id: again\n")
    assert issues(text, plugins) == ["site.yaml:4: site.id: duplicate key (first given on line 2)"]


def test_yaml_syntax_error_names_the_line(plugins: dict[str, DriverPlugin]) -> None:
    (msg,) = issues(VALID.replace("  id: plant-a", "  id: [plant-a"), plugins)
    assert msg.startswith("site.yaml:3: not valid YAML")


def test_asset_cycles_and_unknown_parents_are_refused(plugins: dict[str, DriverPlugin]) -> None:
    text = VALID.replace("  - id: line1\n", "  - id: line1\n    parent: pump1\n  - id: orphan\n    parent: nowhere\n")
    found = issues(text, plugins)
    assert "site.yaml:14: assets[1].parent: parent 'nowhere' is not a declared asset" in found
    assert any("is its own ancestor" in f for f in found)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("max_bytes: 64MiB", "max_bytes: 10KiB", "site.yaml:6: journal.max_bytes: must be at least 1MiB"),
        ("timeout: 2s", "timeout: 0s", "site.yaml:20: devices[0].timing.timeout: must be greater than 0"),
        ("deadband: 0.5", "deadband: -1", "site.yaml:26: devices[0].points[0].deadband: must be 0 or more"),
        (
            "  id: plant-a",
            "  id: plant a",
            "site.yaml:2: site.id: a site id uses letters, digits, '-', '_' and '.' and starts with a letter or digit",
        ),
        ("id: pump1/flow", "id: flow", "site.yaml:22: devices[0].points[0].id: point id 'flow' must be 'asset/point'"),
    ],
)
def test_values_out_of_range_are_refused(plugins: dict[str, DriverPlugin], old: str, new: str, expected: str) -> None:
    assert issues(VALID.replace(old, new), plugins) == [expected]


def test_unreadable_file_is_a_config_error(tmp_path: Path, plugins: dict[str, DriverPlugin]) -> None:
    (issue,) = check_config(tmp_path / "missing.yaml", plugins=plugins)
    assert "cannot read the file" in issue.message


def test_empty_file_asks_for_a_site(plugins: dict[str, DriverPlugin]) -> None:
    assert issues("", plugins) == ["site.yaml: the file must be a mapping with at least a 'site:' section"]


def _only_config_errors(text: str) -> None:
    try:
        parse_config(text, filename="x.yaml", plugins={})
    except ConfigError as exc:
        if not exc.issues:
            pytest.fail("a ConfigError must carry at least one issue")
    except Exception as exc:  # pragma: no cover - the failure we look for
        pytest.fail(f"unexpected {type(exc).__name__}: {exc}")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_garbage_never_raises_anything_but_config_error(text: str) -> None:
    _only_config_errors(text)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=20,
    ),
    st.sampled_from(["devices", "assets", "site", "journal", "http"]),
)
def test_any_yaml_structure_never_raises_anything_but_config_error(value: object, section: str) -> None:
    _only_config_errors(yaml.safe_dump({"site": {"id": "a"}, section: value}))
