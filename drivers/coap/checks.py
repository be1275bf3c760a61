"""Cross-field checks of a CoAP device's configuration, as (key path, message) pairs. Pure code."""

from __future__ import annotations

import re
from typing import Final

from avila_edge.config.model import DeviceConfig, PointConfig
from drivers.coap.codec import ValuePath
from drivers.coap.config import CoapAddress, CoapConnection, normal_path, path_segments

_SENML_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*\Z")


def check_device(device: DeviceConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    conn: CoapConnection = device.connection
    if not 1 <= conn.port <= 65535:
        problems.append(("connection.port", "must be between 1 and 65535"))
    if conn.max_payload < 1:
        problems.append(("connection.max_payload", "must be at least 1 byte"))
    if conn.max_silence is not None and conn.max_silence <= 0:
        problems.append(("connection.max_silence", "must be longer than 0 s (leave it out for the default)"))
    if conn.mode == "client":
        if not conn.host:
            problems.append(("connection.host", "client mode needs the node's host (name or address)"))
        if conn.names:
            problems.append(("connection.names", "names map SenML records POSTed to the gateway: use mode: server"))
        observe_of: dict[str, bool] = {}
        for i, point in enumerate(device.points):
            problems.extend(_client_point(f"points[{i}]", point, observe_of))
    else:
        problems.extend(_server(device, conn))
    return problems


def _client_point(here: str, point: PointConfig, observe_of: dict[str, bool]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    a: CoapAddress = point.address
    if a.path is None or not path_segments(a.path):
        problems.append((f"{here}.address.path", "a point of a CoAP node needs the resource path (e.g. /temp)"))
        return problems
    path = normal_path(a.path)
    if observe_of.setdefault(path, a.observe) != a.observe:
        problems.append((f"{here}.address.observe", f"every point of resource {path} must agree on observe"))
    fmt = a.fmt
    if a.value_path is not None:
        if fmt != "json":
            problems.append((f"{here}.address.value_path", "value_path is for format: json"))
        try:
            parsed = ValuePath.parse(a.value_path)
        except ValueError as exc:
            problems.append((f"{here}.address.value_path", str(exc)))
        else:
            if point.writable and not parsed.writable:
                problems.append((f"{here}.address.value_path", "a writable point's value path uses keys only"))
    if fmt == "senml" and a.name is None:
        problems.append((f"{here}.address.name", "a senml point needs the record's resolved name"))
    if a.name is not None:
        if fmt != "senml":
            problems.append((f"{here}.address.name", "name is for format: senml"))
        elif not _SENML_NAME.match(a.name):
            problems.append((f"{here}.address.name", f"{a.name!r} is not a SenML name (letters, digits and -:./_)"))
    return problems


def _server(device: DeviceConfig, conn: CoapConnection) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not conn.paths:
        problems.append(("connection.paths", "a SenML ingest needs at least one path (e.g. senml)"))
    seen_paths: set[str] = set()
    for i, path in enumerate(conn.paths):
        if not path_segments(path):
            problems.append((f"connection.paths[{i}]", "a path cannot be empty"))
        elif normal_path(path) in seen_paths:
            problems.append((f"connection.paths[{i}]", f"{normal_path(path)} is listed twice"))
        seen_paths.add(normal_path(path))
    point_ids = {p.id for p in device.points}
    fed: dict[str, str] = {}
    for name, pid in conn.names.items():
        if not _SENML_NAME.match(name):
            problems.append(("connection.names", f"{name!r} is not a SenML name (letters, digits and -:./_)"))
        if pid not in point_ids:
            problems.append(("connection.names", f"{name!r} maps to {pid!r}, which is not a point of this device"))
        elif pid in fed:
            problems.append(("connection.names", f"{pid} is fed by both {fed[pid]!r} and {name!r}"))
        else:
            fed[pid] = name
    named: dict[str, str] = {}
    for i, point in enumerate(device.points):
        here = f"points[{i}]"
        a: CoapAddress = point.address
        for key in ("path", "format", "value_path"):
            if getattr(a, key) is not None:
                problems.append(
                    (f"{here}.address.{key}", f"{key} is for mode: client; a SenML ingest point has a name")
                )
        if not a.observe:
            problems.append((f"{here}.address.observe", "observe is for mode: client"))
        if point.writable:
            problems.append((f"{here}.writable", "points of a SenML ingest cannot be written"))
        if a.name is not None:
            if a.name in named:
                problems.append((f"{here}.address.name", f"{a.name!r} already feeds {named[a.name]}"))
            named.setdefault(a.name, point.id)
            if not _SENML_NAME.match(a.name):
                problems.append((f"{here}.address.name", f"{a.name!r} is not a SenML name (letters, digits and -:./_)"))
            if a.name in conn.names:
                problems.append((f"{here}.address.name", f"{a.name!r} is also in connection.names"))
            if point.id in fed:
                problems.append(
                    (f"{here}.address.name", f"{point.id} is also fed by {fed[point.id]!r} in connection.names")
                )
        elif point.id not in fed:
            problems.append(
                (
                    f"{here}.address",
                    "no SenML name feeds this point: give address {name: ...} or an entry in connection.names",
                )
            )
    return problems
