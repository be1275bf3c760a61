"""load_config / parse_config / check_config: a valid file becomes frozen typed objects; a bad one a full report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from avila_edge.config import (
    DataType,
    GatewayConfig,
    LogFormat,
    LogLevel,
    Synchronous,
    check_config,
    load_config,
    parse_config,
)
from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock, ConfigError
from avila_edge.driver import Driver, DriverPlugin

Problems = Callable[[str], list[str]]


def test_valid_file_becomes_the_expected_frozen_objects(
    plugins: dict[str, DriverPlugin], valid: str, tmp_path: Path
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(valid)
    cfg = load_config(path, plugins=plugins)
    assert isinstance(cfg, GatewayConfig)
    assert (cfg.site.id, cfg.site.name) == ("plant-a", "Plant A")
    assert cfg.journal.max_bytes == 64 * 2**20
    assert cfg.journal.max_age == 7 * 86400.0
    assert cfg.journal.synchronous is Synchronous.FULL
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 0)
    assert (cfg.logging.format, cfg.logging.level) == (LogFormat.JSON, LogLevel.DEBUG)
    assert [(a.id, a.parent) for a in cfg.assets] == [("line1", None), ("pump1", "line1")]
    (dev,) = cfg.devices
    assert (dev.id, dev.driver, dev.enabled) == ("plc1", "fake", True)
    assert (dev.connection.host, dev.connection.port) == ("127.0.0.1", 5020)
    assert (dev.timing.poll_interval, dev.timing.timeout, dev.timing.retries) == (0.5, 2.0, 0)
    flow, running = dev.points
    assert (flow.id, flow.type, flow.unit, flow.deadband, flow.scale) == (
        "pump1/flow",
        DataType.FLOAT32,
        "m3/h",
        0.5,
        1.0,
    )
    assert (flow.address.table, flow.address.address) == ("holding", 0)
    assert (running.type, running.poll_interval) == (DataType.BOOL, 300.0)
    assert dev.poll_interval_of(flow) == 0.5
    assert dev.poll_interval_of(running) == 300.0
    assert set(cfg.points()) == {"pump1/flow", "pump1/running"}


def test_loaded_objects_are_frozen(plugins: dict[str, DriverPlugin], valid: str) -> None:
    cfg = parse_config(valid, filename="site.yaml", plugins=plugins)
    with pytest.raises(AttributeError):
        cfg.site.id = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.devices[0].points[0].address.address = 9
    assert isinstance(cfg.devices, tuple)
    assert isinstance(cfg.devices[0].points, tuple)


def test_relative_state_dir_resolves_against_the_files_folder(
    plugins: dict[str, DriverPlugin], valid: str, tmp_path: Path
) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "site.yaml"
    path.write_text(valid.replace("state_dir: state", "state_dir: ../var/state"))
    assert load_config(path, plugins=plugins).state_dir == tmp_path / "etc" / ".." / "var" / "state"


def test_absolute_state_dir_is_kept_and_default_is_var_lib(
    plugins: dict[str, DriverPlugin], valid: str, tmp_path: Path
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(valid.replace("state_dir: state", "state_dir: /srv/edge"))
    assert load_config(path, plugins=plugins).state_dir == Path("/srv/edge")
    path.write_text(valid.replace("state_dir: state\n", ""))
    assert load_config(path, plugins=plugins).state_dir == Path("/var/lib/avila-edge")


def test_parse_config_without_base_dir_leaves_relative_state_dir(plugins: dict[str, DriverPlugin], valid: str) -> None:
    assert parse_config(valid, filename="x.yaml", plugins=plugins).state_dir == Path("state")


def test_minimal_file_takes_every_default(plugins: dict[str, DriverPlugin]) -> None:
    cfg = parse_config("site: {id: s1}\n", filename="x.yaml", plugins=plugins)
    assert cfg == GatewayConfig(site=cfg.site)
    assert cfg.devices == ()
    assert cfg.assets == ()


def test_empty_devices_and_assets_sections_mean_none(plugins: dict[str, DriverPlugin]) -> None:
    cfg = parse_config("site: {id: s1}\ndevices:\nassets: []\n", filename="x.yaml", plugins=plugins)
    assert (cfg.devices, cfg.assets) == ((), ())


def test_every_problem_of_the_file_is_reported_at_once(problems: Problems, valid: str) -> None:
    text = (
        valid.replace("table: input", "table: coil")
        .replace("type: float32", "type: float")
        .replace("port: 5020", "port: fast")
        .replace("max_age: 7d", "max_age: soon")
        .replace("  name: Plant A", "  nmae: Plant A")
        .replace("deadband: 0.5", "deadband: -0.5")
    )
    assert problems(text) == [
        "site.yaml:3: site.nmae: unknown key; did you mean 'name'?",
        "site.yaml:7: journal.max_age: 'soon' is not a duration; write seconds or e.g. 250ms, 2s, 5m, 1h, 7d",
        "site.yaml:17: devices[0].connection.port: expected a whole number, got text",
        "site.yaml:24: devices[0].points[0].type: 'float' is not a data type; use one of bool, int16, uint16, int32, "
        "uint32, int64, uint64, float32, float64, string",
        "site.yaml:26: devices[0].points[0].deadband: must be 0 or more",
        "site.yaml:28: devices[0].points[1].address.table: 'coil' is not a valid table; use one of holding, input",
    ]


def test_config_error_message_is_one_line_per_issue(plugins: dict[str, DriverPlugin], valid: str) -> None:
    text = valid.replace("type: float32", "type: float").replace("port: 5020", "port: fast")
    with pytest.raises(ConfigError) as info:
        parse_config(text, filename="site.yaml", plugins=plugins)
    assert str(info.value).splitlines() == [str(i) for i in info.value.issues]
    assert [(i.file, i.line, i.path) for i in info.value.issues] == [
        ("site.yaml", 17, "devices[0].connection.port"),
        ("site.yaml", 24, "devices[0].points[0].type"),
    ]


def test_unknown_driver_lists_the_installed_ones(problems: Problems, valid: str) -> None:
    assert problems(valid.replace("driver: fake", "driver: profibus")) == [
        "site.yaml:16: devices[0].driver: unknown driver 'profibus'; installed drivers: fake"
    ]


def test_unknown_driver_with_no_driver_installed_says_so(valid: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(valid, filename="site.yaml", plugins={})
    assert [str(i) for i in info.value.issues] == [
        "site.yaml:16: devices[0].driver: unknown driver 'fake'; installed drivers: none installed"
    ]


def test_connection_is_converted_by_the_drivers_plugin(problems: Problems, valid: str) -> None:
    assert problems(valid.replace("port: 5020}", "port: 5020, tls: true}")) == [
        "site.yaml:17: devices[0].connection.tls: unknown key; valid keys here: host, port"
    ]


def test_missing_connection_points_at_the_device(problems: Problems, valid: str) -> None:
    assert problems(valid.replace("    connection: {host: 127.0.0.1, port: 5020}\n", "")) == [
        "site.yaml:15: devices[0].connection: missing required key"
    ]


def test_missing_points_and_address_are_named(problems: Problems, valid: str) -> None:
    text = valid.replace("        address: {table: input, address: 4}\n", "")
    assert problems(text) == ["site.yaml:27: devices[0].points[1].address: missing required key"]
    assert problems(
        "site: {id: s}\nassets: [{id: a}]\ndevices:\n  - id: d\n    driver: fake\n    connection: {host: h}\n"
    ) == ["site.yaml:4: devices[0].points: missing required key"]


def test_driver_cross_field_check_is_mapped_to_its_line(problems: Problems, valid: str) -> None:
    assert problems(valid.replace("address: 4}", "address: 70000}")) == [
        "site.yaml:28: devices[0].points[1].address.address: address must be below 65536"
    ]


def test_driver_check_that_crashes_is_reported_not_raised(valid: str) -> None:
    def crash(device: DeviceConfig) -> list[tuple[str, str]]:
        raise ZeroDivisionError("boom")

    connection = msgspec.defstruct("Connection", [("host", str), ("port", int)])
    address = msgspec.defstruct("Address", [("table", str), ("address", int)])
    plugin = DriverPlugin("fake", connection, address, _never, crash)
    with pytest.raises(ConfigError) as info:
        parse_config(valid, filename="site.yaml", plugins={"fake": plugin})
    (issue,) = info.value.issues
    assert (issue.line, issue.path) == (15, "devices[0]")
    assert "the fake driver could not check this device: ZeroDivisionError('boom')" in issue.message


def _never(device: DeviceConfig, clock: Clock) -> Driver:
    raise AssertionError("config loading never creates a driver")


def test_items_of_the_wrong_shape_are_named(problems: Problems) -> None:
    text = """\
    site: {id: s}
    assets: line1
    devices:
      - 7
      - id: d
        driver: fake
        connection: {host: h}
        points: [pump1/flow]
    """
    assert problems(text) == [
        "site.yaml:2: assets: expected a list of assets, each item starting with '- '",
        "site.yaml:4: devices[0]: expected a mapping describing one device (id, driver, connection, points)",
        "site.yaml:8: devices[1].points[0]: expected a mapping describing one point (id, address, type ...)",
    ]


def test_file_that_is_not_a_mapping_asks_for_sections(problems: Problems) -> None:
    assert problems("") == ["site.yaml: the file must be a mapping of sections, starting with 'site:'"]
    assert problems("- site\n") == ["site.yaml:1: the file must be a mapping of sections, starting with 'site:'"]


def test_missing_site_is_named(problems: Problems) -> None:
    assert problems("journal: {}\n") == ["site.yaml:1: site: missing required key"]


def test_check_config_returns_nothing_for_a_valid_file(
    plugins: dict[str, DriverPlugin], valid: str, tmp_path: Path
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(valid)
    assert check_config(path, plugins=plugins) == []


def test_check_config_returns_the_issues_instead_of_raising(
    plugins: dict[str, DriverPlugin], valid: str, tmp_path: Path
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(valid.replace("type: float32", "type: float"))
    (issue,) = check_config(path, plugins=plugins)
    assert (issue.file, issue.line, issue.path) == (str(path), 24, "devices[0].points[0].type")


def test_unreadable_or_undecodable_file_is_a_config_issue(plugins: dict[str, DriverPlugin], tmp_path: Path) -> None:
    (missing,) = check_config(tmp_path / "missing.yaml", plugins=plugins)
    assert missing.message.startswith("cannot read the file")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("site: {id: caf\xe9}\n".encode("latin-1"))
    (undecodable,) = check_config(latin, plugins=plugins)
    assert undecodable.file == str(latin)
    assert undecodable.message.startswith("cannot read the file")
