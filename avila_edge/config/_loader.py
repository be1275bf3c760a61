"""Turns a YAML site configuration into a frozen ``GatewayConfig``, reporting every problem at file:line."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from avila_edge.config._yaml import KeyPath, YamlProblem, compose, format_path, line_of
from avila_edge.config.model import (
    AssetConfig,
    ByteSize,
    DeviceConfig,
    Duration,
    GatewayConfig,
    PointConfig,
)
from avila_edge.core import ConfigError, ConfigIssue, split_point_id

if TYPE_CHECKING:
    from avila_edge.driver.registry import DriverPlugin

S = TypeVar("S", bound=msgspec.Struct)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping of keys",
    "null": "nothing",
}


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Duration:
        if isinstance(obj, bool):
            raise ValueError(f"{obj!r} is not a duration")
        if isinstance(obj, int | float):
            seconds = float(obj)
        elif isinstance(obj, str) and (m := _DURATION.match(obj)):
            seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            raise ValueError(f"{obj!r} is not a duration; write seconds or e.g. 250ms, 2s, 5m, 1h, 7d")
        if seconds < 0:
            raise ValueError(f"{obj!r} is negative; a duration must be 0 or more")
        return Duration(seconds)
    if typ is ByteSize:
        if isinstance(obj, bool):
            raise ValueError(f"{obj!r} is not a size")
        if isinstance(obj, int):
            size = obj
        elif isinstance(obj, str) and (m := _SIZE.match(obj)):
            size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
        else:
            raise ValueError(f"{obj!r} is not a size; write bytes or e.g. 64KiB, 16MB, 1GiB")
        if size < 0:
            raise ValueError(f"{obj!r} is negative")
        return ByteSize(size)
    if typ is Path:
        if isinstance(obj, str) and obj:
            return Path(obj)
        raise ValueError(f"{obj!r} is not a path")
    raise NotImplementedError


class _Collector:
    """Collects issues for one file and converts pieces of it into structs."""

    def __init__(self, filename: str, lines: dict[KeyPath, int]) -> None:
        self.filename = filename
        self.lines = lines
        self.issues: list[ConfigIssue] = []

    def add(self, path: KeyPath, message: str, *, at_parent: bool = False) -> None:
        line = line_of(self.lines, path[:-1] if at_parent and path else path)
        self.issues.append(ConfigIssue(self.filename, line, format_path(path), message))

    def convert(self, raw: Any, typ: type[S], path: KeyPath) -> S | None:
        try:
            return msgspec.convert(raw, typ, dec_hook=_dec_hook, str_keys=True)
        except msgspec.ValidationError as exc:
            self._explain(exc, typ, path)
            return None

    def _explain(self, exc: msgspec.ValidationError, typ: type, base: KeyPath) -> None:
        text = str(exc)
        message, _, where = text.partition(" - at `")
        rel = _parse_msgspec_path(where.rstrip("`")) if where else ()
        path = (*base, *rel)
        info = _type_at(msgspec.inspect.type_info(typ), rel)
        if m := re.match(r"Object contains unknown field `(.+)`", message):
            key = m.group(1)
            valid = _field_names(info)
            hint = difflib.get_close_matches(key, valid, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f"; valid keys: {', '.join(valid)}"
            self.add((*path, key), f"unknown key{suggestion}")
            return
        if m := re.match(r"Object missing required field `(.+)`", message):
            self.add((*path, m.group(1)), "missing required key", at_parent=True)
            return
        if m := re.match(r"Invalid enum value (.+)", message):
            self.add(path, f"{m.group(1)} is not allowed; use one of {_choices(info)}")
            return
        if m := re.match(r"Expected `(.+)`, got `(.+)`", message):
            want = " or ".join(_TYPE_WORDS.get(w.strip(), w.strip()) for w in m.group(1).split("|"))
            got = _TYPE_WORDS.get(m.group(2), m.group(2))
            choices = _choices(info)
            extra = f" (one of {choices})" if choices else ""
            self.add(path, f"expected {want}{extra}, got {got}")
            return
        self.add(path, message)


def _parse_msgspec_path(where: str) -> KeyPath:
    out: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", where.removeprefix("$")):
        out.append(int(index) if index else name)
    return tuple(out)


def _type_at(info: Any, rel: KeyPath) -> Any:
    for part in rel:
        info = _unwrap(info)
        if isinstance(part, str) and isinstance(info, msgspec.inspect.StructType):
            match = [f.type for f in info.fields if f.encode_name == part]
            if not match:
                return None
            info = match[0]
        elif isinstance(part, int) and hasattr(info, "item_type"):
            info = info.item_type
        elif isinstance(part, str) and isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            return None
    return _unwrap(info)


def _unwrap(info: Any) -> Any:
    if isinstance(info, msgspec.inspect.UnionType):
        inner = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(inner) == 1:
            return inner[0]
    return info


def _field_names(info: Any) -> list[str]:
    if isinstance(info, msgspec.inspect.StructType):
        return [f.encode_name for f in info.fields]
    return []


def _choices(info: Any) -> str:
    if isinstance(info, msgspec.inspect.EnumType):
        return ", ".join(str(m.value) for m in info.cls)
    if isinstance(info, msgspec.inspect.LiteralType):
        return ", ".join(str(v) for v in info.values)
    return ""


# ---------------------------------------------------------------------------------------------------


def parse_config(
    text: str,
    *,
    filename: str,
    plugins: Mapping[str, DriverPlugin] | None = None,
    base_dir: Path | None = None,
) -> GatewayConfig:
    """Parse a configuration text; raise ``ConfigError`` listing every problem found."""
    try:
        raw, lines = compose(text, filename)
    except YamlProblem as exc:
        raise ConfigError([exc.issue]) from None
    c = _Collector(filename, lines)
    if not isinstance(raw, dict):
        c.add((), "the file must be a mapping with at least a 'site:' section")
        raise ConfigError(c.issues)
    if plugins is None:
        from avila_edge.driver.registry import load_plugins  # noqa: PLC0415 - the registry imports config

        plugins = load_plugins()
    config = _build(raw, c, plugins)
    if config is not None:
        _cross_check(config, c, plugins)
    if c.issues or config is None:
        raise ConfigError(sorted(c.issues, key=lambda i: (i.line or 0, i.path)))
    if base_dir is not None and not config.state_dir.is_absolute():
        config = msgspec.structs.replace(config, state_dir=(base_dir / config.state_dir))
    return config


def load_config(path: Path, *, plugins: Mapping[str, DriverPlugin] | None = None) -> GatewayConfig:
    """Load the configuration file at ``path`` (relative paths in it resolve against its folder)."""
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


def _build(raw: dict[str, Any], c: _Collector, plugins: Mapping[str, DriverPlugin]) -> GatewayConfig | None:
    sections = {k: v for k, v in raw.items() if k not in ("devices", "assets")}
    devices_raw = raw.get("devices", [])
    assets_raw = raw.get("assets", [])
    top = c.convert(sections, GatewayConfig, ())
    devices: list[DeviceConfig] = []
    if not isinstance(devices_raw, list):
        c.add(("devices",), "expected a list of devices")
    else:
        for i, dev in enumerate(devices_raw):
            device = _build_device(dev, ("devices", i), c, plugins)
            if device is not None:
                devices.append(device)
    assets: list[AssetConfig] = []
    if not isinstance(assets_raw, list):
        c.add(("assets",), "expected a list of assets")
    else:
        for i, a in enumerate(assets_raw):
            asset = c.convert(a, AssetConfig, ("assets", i))
            if asset is not None:
                assets.append(asset)
    if top is None:
        return None
    return msgspec.structs.replace(top, devices=tuple(devices), assets=tuple(assets))


def _build_device(dev: Any, path: KeyPath, c: _Collector, plugins: Mapping[str, DriverPlugin]) -> DeviceConfig | None:
    if not isinstance(dev, dict):
        c.add(path, "expected a mapping describing one device")
        return None
    shell = c.convert({**dev, "points": [], "connection": None}, DeviceConfig, path)
    plugin = plugins.get(dev["driver"]) if isinstance(dev.get("driver"), str) else None
    if shell is not None and plugin is None:
        known = ", ".join(sorted(plugins)) or "none installed"
        c.add((*path, "driver"), f"unknown driver '{shell.driver}'; installed drivers: {known}")
    connection = None
    if plugin is not None:
        if "connection" not in dev:
            c.add((*path, "connection"), "missing required key", at_parent=True)
        else:
            connection = c.convert(dev["connection"], plugin.connection_type, (*path, "connection"))
    points: list[PointConfig] = []
    points_raw = dev.get("points", [])
    if not isinstance(points_raw, list):
        c.add((*path, "points"), "expected a list of points")
        points_raw = []
    for j, pt in enumerate(points_raw):
        ppath = (*path, "points", j)
        if not isinstance(pt, dict):
            c.add(ppath, "expected a mapping describing one point")
            continue
        pshell = c.convert({**pt, "address": None}, PointConfig, ppath)
        address = None
        if plugin is not None:
            if "address" not in pt:
                c.add((*ppath, "address"), "missing required key", at_parent=True)
                continue
            address = c.convert(pt["address"], plugin.address_type, (*ppath, "address"))
            if address is None:
                continue
        if pshell is not None:
            points.append(msgspec.structs.replace(pshell, address=address))
    if shell is None:
        return None
    device = msgspec.structs.replace(shell, connection=connection, points=tuple(points))
    if plugin is not None and plugin.check_device is not None and connection is not None:
        for rel, message in plugin.check_device(device):
            c.add((*path, *_parse_msgspec_path("." + rel if not rel.startswith("[") else rel)), message)
    return device


def _cross_check(config: GatewayConfig, c: _Collector, plugins: Mapping[str, DriverPlugin]) -> None:
    if not _SAFE_ID.match(config.site.id):
        c.add(("site", "id"), "a site id uses letters, digits, '-', '_' and '.' and starts with a letter or digit")
    asset_ids = {a.id for a in config.assets}
    seen_assets: dict[str, int] = {}
    for i, a in enumerate(config.assets):
        if not _SAFE_ID.match(a.id):
            c.add(("assets", i, "id"), f"asset id '{a.id}' may only use letters, digits, '-', '_' and '.'")
        if a.id in seen_assets:
            c.add(("assets", i, "id"), f"asset '{a.id}' is already declared (assets[{seen_assets[a.id]}])")
        seen_assets.setdefault(a.id, i)
        if a.parent is not None and a.parent not in asset_ids:
            c.add(("assets", i, "parent"), f"parent '{a.parent}' is not a declared asset")
    parents = {a.id: a.parent for a in config.assets}
    for i, a in enumerate(config.assets):
        seen, node = {a.id}, a.parent
        while node is not None:
            if node in seen:
                c.add(("assets", i, "parent"), f"asset '{a.id}' is its own ancestor (a cycle through '{node}')")
                break
            seen.add(node)
            node = parents.get(node)
    seen_devices: dict[str, int] = {}
    seen_points: dict[str, str] = {}
    for i, d in enumerate(config.devices):
        if not _SAFE_ID.match(d.id):
            c.add(("devices", i, "id"), f"device id '{d.id}' may only use letters, digits, '-', '_' and '.'")
        if d.id in seen_devices:
            c.add(("devices", i, "id"), f"device '{d.id}' is already declared (devices[{seen_devices[d.id]}])")
        seen_devices.setdefault(d.id, i)
        t = d.timing
        for key, value in (
            ("poll_interval", t.poll_interval),
            ("timeout", t.timeout),
            ("backoff_initial", t.backoff_initial),
        ):
            if value <= 0:
                c.add(("devices", i, "timing", key), "must be greater than 0")
        if t.backoff_max < t.backoff_initial:
            c.add(("devices", i, "timing", "backoff_max"), "must be at least backoff_initial")
        if t.retries < 0:
            c.add(("devices", i, "timing", "retries"), "must be 0 or more")
        for j, p in enumerate(d.points):
            ppath: KeyPath = ("devices", i, "points", j)
            try:
                asset, _ = split_point_id(p.id)
            except ValueError:
                c.add((*ppath, "id"), f"point id '{p.id}' must be 'asset/point'")
                continue
            if not all(_SAFE_ID.match(part) for part in p.id.split("/")):
                c.add((*ppath, "id"), f"point id '{p.id}' may only use letters, digits, '-', '_' and '.'")
            if p.id in seen_points:
                c.add((*ppath, "id"), f"point '{p.id}' is already defined on device '{seen_points[p.id]}'")
            seen_points.setdefault(p.id, d.id)
            if asset not in asset_ids:
                known = ", ".join(sorted(asset_ids)) or "none declared"
                c.add((*ppath, "id"), f"asset '{asset}' is not declared under assets: (declared: {known})")
            if p.deadband < 0:
                c.add((*ppath, "deadband"), "must be 0 or more")
            if p.poll_interval is not None and p.poll_interval <= 0:
                c.add((*ppath, "poll_interval"), "must be greater than 0")
    if config.journal.max_bytes < 1 << 20:
        c.add(("journal", "max_bytes"), "must be at least 1MiB")
    if config.journal.batch_max < 1:
        c.add(("journal", "batch_max"), "must be at least 1")
    if not 0 <= config.http.port <= 65535:
        c.add(("http", "port"), "must be between 1 and 65535 (0 picks a free port)")
