"""Checks that span keys or sections: unique ids, declared assets, the asset tree, ranges."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from avila_edge.config._convert import Collector
from avila_edge.config._yaml import KeyPath
from avila_edge.config.expr import Expression, ExpressionError
from avila_edge.config.model import AssetConfig, DeviceConfig, GatewayConfig
from avila_edge.config.twins import AssetTypeConfig
from avila_edge.core import split_point_id

MIN_JOURNAL_BYTES = 1 << 20
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SAFE_WORDS = "letters, digits, '-', '_' and '.' (starting with a letter or digit)"


@dataclass(frozen=True, slots=True)
class PlacedDevice:
    """A converted device and, for each of its points, the point's index in the file."""

    index: int
    device: DeviceConfig
    point_indexes: tuple[int, ...]


@dataclass(slots=True)
class Draft:
    """What could be converted; indexes are those of the file, so messages name the right item."""

    top: GatewayConfig | None = None
    assets: list[tuple[int, AssetConfig]] = field(default_factory=list)
    devices: list[PlacedDevice] = field(default_factory=list)


def cross_check(draft: Draft, c: Collector) -> None:
    """Report every problem that no single key shows on its own."""
    if draft.top is not None:
        _check_sections(draft.top, c)
    asset_ids = _check_assets(draft.assets, c)
    _check_devices(draft.devices, asset_ids, c)
    if draft.top is not None:
        _check_twins(draft.top.asset_types, draft, c)
        _check_anomaly(draft.top, draft, c)


def _check_twins(types: tuple[AssetTypeConfig, ...], draft: Draft, c: Collector) -> None:
    """Asset types: declared once, expressions valid, every name they use exists on their assets."""
    declared: dict[str, int] = {}
    for i, t in enumerate(types):
        if t.id in declared:
            c.add(("asset_types", i, "id"), f"asset type '{t.id}' is already declared (asset_types[{declared[t.id]}])")
        declared.setdefault(t.id, i)
    if not types:
        return
    points: dict[str, set[str]] = {}
    writable: dict[str, set[str]] = {}
    for placed in draft.devices:
        for p in placed.device.points:
            asset, _, name = p.id.partition("/")
            points.setdefault(asset, set()).add(name)
            if p.writable:
                writable.setdefault(asset, set()).add(name)
    members: dict[str, list[str]] = {}
    asset_ids = {a.id for _, a in draft.assets}
    for i, a in draft.assets:
        if a.type and a.type not in declared:
            known = ", ".join(sorted(declared))
            c.add(
                ("assets", i, "type"), f"asset type '{a.type}' is not declared under asset_types: (declared: {known})"
            )
        members.setdefault(a.type, []).append(a.id)
    for i, t in enumerate(types):
        base: tuple[str | int, ...] = ("asset_types", i)
        own = set(t.derived) | set(t.aggregates)

        def known_on_all(name: str, path: tuple[str | int, ...], what: str, t: AssetTypeConfig = t) -> None:
            if "." in name:
                other = name.partition(".")[0]
                if other not in asset_ids:
                    c.add(path, f"{what} '{name}' names asset '{other}', which is not declared")
                return
            if name in set(t.derived) | set(t.aggregates):
                return
            missing = [a for a in members.get(t.id, []) if name not in points.get(a, set())]
            if missing:
                c.add(
                    path, f"{what} '{name}' is neither a derived value of '{t.id}' nor a point of {', '.join(missing)}"
                )

        for name, text in t.derived.items():
            try:
                expr = Expression(text)
            except ExpressionError as exc:
                c.add((*base, "derived", name), str(exc))
                continue
            for used in sorted(expr.names - {name}):
                known_on_all(used, (*base, "derived", name), "value")
            if name in expr.names:
                c.add((*base, "derived", name), f"'{name}' uses itself")
        for j, alarm in enumerate(t.alarms):
            known_on_all(alarm.value, (*base, "alarms", j, "value"), "alarm value")
            if alarm.hysteresis < 0 or alarm.delay < 0 or alarm.clear_delay < 0 or alarm.window <= 0:
                c.add((*base, "alarms", j), "hysteresis and delays must be 0 or more, window more than 0")
        if t.maintenance is not None:
            known_on_all(t.maintenance.indicator, (*base, "maintenance", "indicator"), "indicator")
            if not 0 < t.maintenance.confidence < 1:
                c.add((*base, "maintenance", "confidence"), "must be between 0 and 1, e.g. 0.9")
            if t.maintenance.sample_interval <= 0 or t.maintenance.history <= t.maintenance.sample_interval:
                c.add((*base, "maintenance", "history"), "must be longer than sample_interval, which must be above 0")
        for name in t.writable:
            if name in own:
                c.add((*base, "writable", name), "a derived value cannot be written; name a device point")
                continue
            missing = [a for a in members.get(t.id, []) if name not in writable.get(a, set())]
            if missing:
                c.add(
                    (*base, "writable", name),
                    f"'{name}' is not a writable point (writable: true) of {', '.join(missing)}",
                )


def _check_anomaly(top: GatewayConfig, draft: Draft, c: Collector) -> None:
    """Anomaly detectors: a declared target, a model or features, features that exist, sane ranges."""
    a = top.anomaly
    for key, number in (("queue", a.queue), ("batch_max", a.batch_max)):
        if number < 1:
            c.add(("anomaly", key), "must be at least 1")
    for key, seconds in (
        ("max_latency", a.max_latency),
        ("reload_interval", a.reload_interval),
        ("state_save_interval", a.state_save_interval),
    ):
        if seconds <= 0:
            c.add(("anomaly", key), "must be greater than 0")
    names: dict[str, set[str]] = {}
    for placed in draft.devices:
        for p in placed.device.points:
            asset, _, name = p.id.partition("/")
            names.setdefault(asset, set()).add(name)
    types = {t.id: t for t in top.asset_types}
    members: dict[str, list[str]] = {}
    for _, asset_config in draft.assets:
        members.setdefault(asset_config.type, []).append(asset_config.id)
    seen: dict[tuple[str, str], int] = {}
    for i, d in enumerate(a.detectors):
        base: KeyPath = ("anomaly", "detectors", i)
        if not _SAFE_ID.match(d.id):
            c.add((*base, "id"), f"detector id '{d.id}' may only use {_SAFE_WORDS}")
        if (d.asset_type is None) == (d.asset is None):
            c.add(base, "name exactly one of asset_type (every asset of a type) or asset (one asset)")
            continue
        target = d.asset_type or d.asset or ""
        if (d.id, target) in seen:
            c.add(
                (*base, "id"), f"detector '{d.id}' is already declared for {target} (detectors[{seen[d.id, target]}])"
            )
        seen.setdefault((d.id, target), i)
        if d.asset_type is not None:
            if d.asset_type not in types:
                c.add((*base, "asset_type"), f"asset type '{d.asset_type}' is not declared under asset_types:")
                continue
            assets = members.get(d.asset_type, [])
        else:
            if d.asset not in {x.id for _, x in draft.assets}:
                c.add((*base, "asset"), f"asset '{d.asset}' is not declared under assets:")
                continue
            assets = [d.asset or ""]
        if d.detector == "onnx" and not d.model:
            c.add((*base, "model"), "an onnx detector names its model (a name in the model registry)")
        if d.detector == "baseline" and not d.features:
            c.add((*base, "features"), "a baseline detector needs at least one feature, e.g. - {point: vibration}")
        type_of = {x.id: x.type for _, x in draft.assets}
        for j, f in enumerate(d.features):
            missing = []
            for asset in assets:
                t = types.get(type_of.get(asset, ""))
                own = set(t.derived) | set(t.aggregates) if t is not None else set()
                if f.point not in names.get(asset, set()) and f.point not in own:
                    missing.append(asset)
            if missing:
                where = ", ".join(missing)
                c.add((*base, "features", j, "point"), f"'{f.point}' is not a point or derived value of {where}")
        if d.window is not None and d.window <= 0:
            c.add((*base, "window"), "must be greater than 0")
        if d.explain < 0:
            c.add((*base, "explain"), "must be 0 or more")
        th = d.threshold
        problems = [
            ("quantile", th.quantile is not None and not 0 < th.quantile < 1, "must be between 0 and 1, e.g. 0.995"),
            ("margin", th.margin is not None and th.margin <= 0, "must be greater than 0"),
            ("warmup", th.warmup is not None and th.warmup < 2, "must be at least 2 windows"),
            ("history", th.history is not None and th.history < 2, "must be at least 2 windows"),
            ("manual", th.manual is not None and not th.manual > 0, "must be greater than 0"),
            ("raise_after", th.raise_after < 1, "must be at least 1 window"),
            ("clear_after", th.clear_after < 1, "must be at least 1 window"),
            ("clear_ratio", not 0 < th.clear_ratio <= 1, "must be above 0 and at most 1, e.g. 0.8"),
        ]
        for key, bad, message in problems:
            if bad:
                c.add((*base, "threshold", key), message)


def _check_sections(top: GatewayConfig, c: Collector) -> None:
    if not top.site.id:
        c.add(("site", "id"), "the site id must not be empty")
    elif not _SAFE_ID.match(top.site.id):
        c.add(("site", "id"), f"site id '{top.site.id}' may only use {_SAFE_WORDS}")
    if top.journal.max_bytes < MIN_JOURNAL_BYTES:
        c.add(("journal", "max_bytes"), "must be at least 1MiB")
    if top.journal.batch_max < 1:
        c.add(("journal", "batch_max"), "must be at least 1")
    if top.journal.max_age is not None and top.journal.max_age <= 0:
        c.add(("journal", "max_age"), "must be greater than 0 (leave it out to keep entries of any age)")
    if not 0 <= top.http.port <= 65535:
        c.add(("http", "port"), "must be between 1 and 65535 (0 picks a free port)")
    if not top.http.host:
        c.add(("http", "host"), "must not be empty (127.0.0.1 serves this machine only, 0.0.0.0 every network)")


def _check_assets(assets: list[tuple[int, AssetConfig]], c: Collector) -> set[str]:
    asset_ids = {a.id for _, a in assets}
    first: dict[str, int] = {}
    for i, a in assets:
        if not _SAFE_ID.match(a.id):
            c.add(("assets", i, "id"), f"asset id '{a.id}' may only use {_SAFE_WORDS}")
        if a.id in first:
            c.add(("assets", i, "id"), f"asset '{a.id}' is already declared (assets[{first[a.id]}])")
        first.setdefault(a.id, i)
        if a.parent is not None and a.parent not in asset_ids:
            known = ", ".join(sorted(asset_ids))
            c.add(("assets", i, "parent"), f"parent '{a.parent}' is not a declared asset (declared: {known})")
    parents = {a.id: a.parent for _, a in assets}
    for i, a in assets:  # an asset on a loop is reported; one below a loop is not (its ancestor is)
        chain, node = [a.id], a.parent
        while node is not None and node not in chain[1:]:
            chain.append(node)
            if node == a.id:
                c.add(("assets", i, "parent"), f"asset '{a.id}' is its own ancestor: {' → '.join(chain)}")
                break
            node = parents.get(node)
    return asset_ids


def _check_devices(devices: list[PlacedDevice], asset_ids: set[str], c: Collector) -> None:
    first_device: dict[str, int] = {}
    point_owner: dict[str, str] = {}
    for placed in devices:
        i, d = placed.index, placed.device
        if not _SAFE_ID.match(d.id):
            c.add(("devices", i, "id"), f"device id '{d.id}' may only use {_SAFE_WORDS}")
        if d.id in first_device:
            c.add(("devices", i, "id"), f"device '{d.id}' is already declared (devices[{first_device[d.id]}])")
        first_device.setdefault(d.id, i)
        t = d.timing
        for key, value in (("poll_interval", t.poll_interval), ("timeout", t.timeout)):
            if value <= 0:
                c.add(("devices", i, "timing", key), "must be greater than 0")
        if t.backoff_initial <= 0:
            c.add(("devices", i, "timing", "backoff_initial"), "must be greater than 0")
        elif t.backoff_max < t.backoff_initial:
            c.add(("devices", i, "timing", "backoff_max"), "must be at least backoff_initial")
        if t.retries < 0:
            c.add(("devices", i, "timing", "retries"), "must be 0 or more")
        for j, p in zip(placed.point_indexes, d.points, strict=True):
            path: KeyPath = ("devices", i, "points", j)
            for key, number in (("scale", p.scale), ("offset", p.offset), ("deadband", p.deadband)):
                if not math.isfinite(number):
                    c.add((*path, key), "must be a finite number")
            if p.deadband < 0:
                c.add((*path, "deadband"), "must be 0 or more")
            if p.poll_interval is not None and p.poll_interval <= 0:
                c.add((*path, "poll_interval"), "must be greater than 0")
            try:
                asset, _ = split_point_id(p.id)
            except ValueError:
                c.add((*path, "id"), f"point id '{p.id}' must be 'asset/point', e.g. 'pump1/flow'")
                continue
            if not all(_SAFE_ID.match(part) for part in p.id.split("/")):
                c.add((*path, "id"), f"point id '{p.id}': asset and point names may only use {_SAFE_WORDS}")
            if p.id in point_owner:
                c.add((*path, "id"), f"point '{p.id}' is already defined on device '{point_owner[p.id]}'")
            point_owner.setdefault(p.id, d.id)
            if asset not in asset_ids:
                known = ", ".join(sorted(asset_ids)) or "none"
                c.add((*path, "id"), f"asset '{asset}' is not declared under assets: (declared: {known})")
