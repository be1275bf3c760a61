"""Turns a YAML site configuration into a frozen ``GatewayConfig``, reporting every problem at file:line."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from avila_edge.config._checks import Draft, PlacedDevice, cross_check
from avila_edge.config._convert import Collector, parse_path
from avila_edge.config._yaml import KeyPath, YamlProblem, compose
from avila_edge.config.model import AssetConfig, DeviceConfig, GatewayConfig, PointConfig
from avila_edge.core import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from avila_edge.driver.registry import DriverPlugin

S = TypeVar("S", bound=msgspec.Struct)


def parse_config(
    text: str,
    *,
    filename: str,
    plugins: Mapping[str, DriverPlugin] | None = None,
    base_dir: Path | None = None,
) -> GatewayConfig:
    """Parse a configuration text; raise ``ConfigError`` listing every problem found.

    ``plugins`` are the installed drivers by name (default: ``avila_edge.driver.load_plugins()``);
    a relative ``state_dir`` resolves against ``base_dir`` when given.
    """
    try:
        raw, lines = compose(text, filename)
    except YamlProblem as exc:
        raise ConfigError([exc.issue]) from None
    c = Collector(filename, lines)
    if not isinstance(raw, dict):
        c.add((), "the file must be a mapping of sections, starting with 'site:'")
        raise ConfigError(c.issues)
    if plugins is None:
        from avila_edge.driver.registry import load_plugins  # noqa: PLC0415 - the registry imports the model

        plugins = load_plugins()
    draft = _build(raw, c, plugins)
    cross_check(draft, c)
    if c.issues or draft.top is None:
        raise ConfigError(sorted(c.issues, key=lambda i: (i.line or 0, i.path)))
    config = msgspec.structs.replace(
        draft.top,
        devices=tuple(d.device for d in draft.devices),
        assets=tuple(a for _, a in draft.assets),
    )
    if base_dir is not None and not config.state_dir.is_absolute():
        config = msgspec.structs.replace(config, state_dir=base_dir / config.state_dir)
    return config


def load_config(path: Path, *, plugins: Mapping[str, DriverPlugin] | None = None) -> GatewayConfig:
    """Load the configuration file at ``path``; relative paths in it resolve against its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), None, "", f"cannot read the file: {exc}")]) from None
    return parse_config(text, filename=str(path), plugins=plugins, base_dir=path.resolve().parent)


def check_config(path: Path, *, plugins: Mapping[str, DriverPlugin] | None = None) -> list[ConfigIssue]:
    """Every problem in the configuration at ``path``; ``[]`` when it is valid."""
    try:
        load_config(path, plugins=plugins)
    except ConfigError as exc:
        return exc.issues
    return []


def _build(raw: dict[str, Any], c: Collector, plugins: Mapping[str, DriverPlugin]) -> Draft:
    draft = Draft()
    sections = {k: v for k, v in raw.items() if k not in ("devices", "assets")}
    draft.top = c.convert(sections, GatewayConfig, ())
    for i, item in _items(raw, ("assets",), c):
        asset = c.convert(item, AssetConfig, ("assets", i))
        if asset is not None:
            draft.assets.append((i, asset))
    for i, item in _items(raw, ("devices",), c):
        placed = _build_device(item, ("devices", i), c, plugins)
        if placed is not None:
            draft.devices.append(placed)
    return draft


def _items(raw: dict[str, Any], path: KeyPath, c: Collector) -> Iterator[tuple[int, Any]]:
    """The items of the list at ``raw[path[-1]]`` (absent or empty: none), each taken out of the list
    as it is handed over: nothing reads the raw tree twice, and the memory of an item converted goes
    to the structs built next instead of staying pinned around them until the whole file is done."""
    key = path[-1]
    value = raw.get(key) if isinstance(key, str) else None
    if value is None:
        return
    if not isinstance(value, list):
        c.add(path, f"expected a list of {key}, each item starting with '- '")
        return
    for i in range(len(value)):
        item, value[i] = value[i], None
        yield i, item


def _build_device(dev: Any, path: KeyPath, c: Collector, plugins: Mapping[str, DriverPlugin]) -> PlacedDevice | None:
    if not isinstance(dev, dict):
        c.add(path, "expected a mapping describing one device (id, driver, connection, points)")
        return None
    before = len(c.issues)
    shell = c.convert({**dev, "points": [], "connection": None}, DeviceConfig, path)
    driver = dev.get("driver")
    plugin = plugins.get(driver) if isinstance(driver, str) else None
    if isinstance(driver, str) and plugin is None:
        known = ", ".join(sorted(plugins)) or "none installed"
        c.add((*path, "driver"), f"unknown driver '{driver}'; installed drivers: {known}")
    connection = None
    if plugin is not None:
        if "connection" not in dev:
            c.add((*path, "connection"), "missing required key", at_parent=True)
        else:
            connection = c.convert(dev["connection"], plugin.connection_type, (*path, "connection"))
    if "points" not in dev:
        c.add((*path, "points"), "missing required key", at_parent=True)
    points: list[PointConfig] = []
    indexes: list[int] = []
    for j, item in _items(dev, (*path, "points"), c):
        point = _build_point(item, (*path, "points", j), c, plugin)
        if point is not None:
            points.append(point)
            indexes.append(j)
    if shell is None:
        return None
    device = msgspec.structs.replace(shell, connection=connection, points=tuple(points))
    if plugin is not None and plugin.check_device is not None and len(c.issues) == before:
        try:
            problems = plugin.check_device(device)
        except Exception as exc:  # a driver's own bug must not hide the rest of the report
            problems = [("", f"the {plugin.name} driver could not check this device: {exc!r}")]
        for rel, message in problems:
            c.add((*path, *parse_path(rel)), message)
    return PlacedDevice(path[-1] if isinstance(path[-1], int) else 0, device, tuple(indexes))


def _build_point(item: Any, path: KeyPath, c: Collector, plugin: DriverPlugin | None) -> PointConfig | None:
    if not isinstance(item, dict):
        c.add(path, "expected a mapping describing one point (id, address, type ...)")
        return None
    shell = c.convert({**item, "address": None}, PointConfig, path)
    address = None
    if "address" not in item:
        c.add((*path, "address"), "missing required key", at_parent=True)
        return None
    if plugin is not None:
        address = c.convert(item["address"], plugin.address_type, (*path, "address"))
        if address is None:
            return None
    return None if shell is None else msgspec.structs.replace(shell, address=address)


def load_document(path: Path, typ: type[S]) -> S:
    """Load any other YAML document of ours (the fleet receiver's file, for example) into ``typ``,
    with the same file:line errors as the gateway configuration."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), None, "", f"cannot read the file: {exc}")]) from None
    try:
        raw, lines = compose(text, str(path))
    except YamlProblem as exc:
        raise ConfigError([exc.issue]) from None
    c = Collector(str(path), lines)
    result = c.convert(raw, typ, ())
    if c.issues or result is None:
        raise ConfigError(c.issues or [ConfigIssue(str(path), None, "", "empty document")])
    return result
