"""Which configured point a topic (or a Sparkplug metric) feeds, what the driver subscribes to, and
the cross-field checks of a device's configuration. Pure code, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from avila_edge.config.model import DataType, DeviceConfig, PointConfig
from drivers.mqtt import codec
from drivers.mqtt.codec import Template, ValuePath
from drivers.mqtt.config import DEFAULT_QOS, Format, MqttAddress, MqttConnection, Subscription
from drivers.mqtt.sparkplug import NAMESPACE

_CACHE_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class Route:
    """How one message becomes one point's value."""

    point: PointConfig
    format: Format
    value_path: ValuePath | None
    timestamp_path: ValuePath | None
    subscription: str


@dataclass(frozen=True, slots=True)
class MetricKey:
    group: str
    node: str
    device: str | None
    metric: str


def metric_path(key: MetricKey) -> str:
    """The path a Sparkplug template is matched against: ``spBv1.0/<group>/<node>[/<device>]/<metric>``."""
    device = f"/{key.device}" if key.device is not None else ""
    return f"{NAMESPACE}/{key.group}/{key.node}{device}/{key.metric}"


def node_filter(group: str, node: str) -> str:
    """The filter that carries every message of one edge node and its devices."""
    return f"{NAMESPACE}/{group}/+/{node}/#"


def _path(text: str | None) -> ValuePath | None:
    return ValuePath.parse(text) if text is not None else None


class Routes:
    """The device's subscriptions and the mapping from topics / metrics to configured points.

    Build it only from a device that ``check_device`` accepts.
    """

    def __init__(self, device: DeviceConfig) -> None:
        conn: MqttConnection = device.connection
        self.device = device
        self._templates: list[tuple[Subscription, Template]] = [
            (s, Template.parse(s.template)) for s in conn.subscriptions if s.template is not None
        ]
        self._topics: dict[str, list[Route]] = {}
        self._metrics: dict[MetricKey, Route] = {}
        self._via: dict[str, PointConfig] = {}
        self._sparkplug_filters = [s.filter for s in conn.subscriptions if s.format == "sparkplug"]
        wanted: list[tuple[str, int]] = [(s.filter, s.qos) for s in conn.subscriptions]
        for point in device.points:
            a: MqttAddress = point.address
            qos = a.qos if a.qos is not None else DEFAULT_QOS
            if a.topic is not None:
                route = Route(point, a.format or "json", _path(a.value_path), _path(a.timestamp_path), a.topic)
                self._topics.setdefault(a.topic, []).append(route)
                wanted.append((a.topic, qos))
            elif a.is_sparkplug:
                assert a.group is not None
                assert a.node is not None
                assert a.metric is not None
                nf = node_filter(a.group, a.node)
                self._metrics[MetricKey(a.group, a.node, a.device, a.metric)] = Route(
                    point, "sparkplug", None, None, nf
                )
                wanted.append((nf, qos))
                if not any(codec.filter_covers(f, nf) for f in self._sparkplug_filters):
                    self._sparkplug_filters.append(nf)
            else:
                self._via[point.id] = point
        self.subscriptions: tuple[tuple[str, int], ...] = minimal_filters(wanted)
        self._command: dict[str, tuple[Format, ValuePath | None]] = {}
        for point in device.points:
            a = point.address
            carriers = sorted(
                (s for s, t in self._templates if _carries(s, t, point.id)), key=lambda s: s.format == "sparkplug"
            )
            if a.via_subscription and carriers:
                route = self._template_route(point, carriers[0])
                self._command[point.id] = (route.format, route.value_path)
            else:
                self._command[point.id] = (a.format or "json", _path(a.value_path))
        self._topic_cache: dict[str, list[Route]] = {}
        self._metric_cache: dict[MetricKey, Route | None] = {}

    def is_sparkplug(self, topic: str) -> bool:
        return topic.startswith(NAMESPACE + "/") and any(codec.topic_matches(f, topic) for f in self._sparkplug_filters)

    def for_topic(self, topic: str) -> list[Route]:
        """The routes of a JSON / number message (explicit topics first, then the first template)."""
        cached = self._topic_cache.get(topic)
        if cached is not None:
            return cached
        routes = list(self._topics.get(topic, ()))
        for sub, template in self._templates:
            if sub.format == "sparkplug" or not codec.topic_matches(sub.filter, topic):
                continue
            point_id = template.match(topic)
            point = self._via.get(point_id) if point_id is not None else None
            if point is not None:
                routes.append(self._template_route(point, sub))
                break
        if len(self._topic_cache) >= _CACHE_LIMIT:
            self._topic_cache.clear()
        self._topic_cache[topic] = routes
        return routes

    def for_metric(self, key: MetricKey) -> Route | None:
        """The route of a Sparkplug metric, or None when no configured point takes it."""
        if key in self._metric_cache:
            return self._metric_cache[key]
        route = self._metrics.get(key)
        if route is None:
            path = metric_path(key)
            for sub, template in self._templates:
                if sub.format != "sparkplug":
                    continue
                point_id = template.match(path)
                point = self._via.get(point_id) if point_id is not None else None
                if point is not None:
                    route = self._template_route(point, sub)
                    break
        if len(self._metric_cache) >= _CACHE_LIMIT:
            self._metric_cache.clear()
        self._metric_cache[key] = route
        return route

    @staticmethod
    def _template_route(point: PointConfig, sub: Subscription) -> Route:
        a: MqttAddress = point.address
        return Route(
            point,
            a.format or sub.format,
            _path(a.value_path if a.value_path is not None else sub.value_path),
            _path(a.timestamp_path if a.timestamp_path is not None else sub.timestamp_path),
            sub.filter,
        )

    def command_format(self, point_id: str) -> tuple[Format, ValuePath | None]:
        """How a write to the point is encoded on its ``command_topic`` (its own decoding, inverted)."""
        return self._command[point_id]

    def points_of(self, topic_filter: str) -> list[str]:
        """The points that arrive only through ``topic_filter`` (to mark them Bad if it is refused)."""
        out: list[str] = []
        for point in self.device.points:
            a: MqttAddress = point.address
            if a.topic is not None:
                carriers = [f for f, _ in self.subscriptions if codec.topic_matches(f, a.topic)]
            elif a.is_sparkplug:
                nf = node_filter(a.group or "", a.node or "")
                carriers = [f for f, _ in self.subscriptions if codec.filter_covers(f, nf)]
            else:
                carriers = [s.filter for s, t in self._templates if _carries(s, t, point.id)]
            if carriers == [topic_filter]:
                out.append(point.id)
        return out


def minimal_filters(wanted: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """The filters to subscribe to: each once, none that another one covers, with the highest QoS
    asked of the filters it stands for. The broker then delivers every message once."""
    kept: dict[str, int] = {}
    for f, qos in wanted:
        if f in kept:
            kept[f] = max(kept[f], qos)
            continue
        covering = next((k for k in kept if codec.filter_covers(k, f)), None)
        if covering is not None:
            kept[covering] = max(kept[covering], qos)
            continue
        covered = [k for k in kept if codec.filter_covers(f, k)]
        kept[f] = max([qos, *(kept.pop(k) for k in covered)])
    return tuple(kept.items())


def _carries(sub: Subscription, template: Template, point_id: str) -> bool:
    """True if the template of ``sub`` can yield ``point_id``."""
    rendered = template.render(point_id)
    if sub.format == "sparkplug":
        return rendered.startswith(NAMESPACE + "/")  # which metrics exist is known only from births
    return codec.filter_covers(sub.filter, rendered)


# -- cross-field checks --------------------------------------------------------------------------


def check_device(device: DeviceConfig) -> list[tuple[str, str]]:
    """Cross-field problems in an MQTT device's configuration, as (key path, message)."""
    problems: list[tuple[str, str]] = []
    conn: MqttConnection = device.connection
    if not 1 <= conn.port <= 65535:
        problems.append(("connection.port", "must be between 1 and 65535"))
    if not 1 <= conn.keepalive <= 65535:
        problems.append(("connection.keepalive", "must be between 1 s and 65535 s"))
    if conn.persistent_session and conn.protocol == 5 and conn.session_expiry < 1:
        problems.append(("connection.session_expiry", "a persistent session needs at least 1 s"))
    if conn.max_payload < 1:
        problems.append(("connection.max_payload", "must be at least 1 byte"))
    if not 1 <= conn.max_queued <= 1_000_000:
        problems.append(("connection.max_queued", "must be between 1 and 1000000 messages"))
    if conn.password_file is not None and conn.username is None:
        problems.append(("connection.password_file", "a password needs a username too"))
    if conn.client_id is not None and not conn.client_id:
        problems.append(("connection.client_id", "must not be empty (leave it out for avila-edge-<device id>)"))
    if conn.tls is not None and (conn.tls.cert_file is None) != (conn.tls.key_file is None):
        problems.append(("connection.tls", "cert_file and key_file go together (the client certificate and its key)"))
    templates: list[tuple[Subscription, Template]] = []
    for i, sub in enumerate(conn.subscriptions):
        here = f"connection.subscriptions[{i}]"
        if (problem := codec.filter_problem(sub.filter)) is not None:
            problems.append((f"{here}.filter", problem))
        if not 0 <= sub.qos <= 2:
            problems.append((f"{here}.qos", "must be 0, 1 or 2"))
        if sub.format == "sparkplug":
            if not codec.filter_covers(f"{NAMESPACE}/#", sub.filter) and not sub.filter.startswith(("+", "#")):
                problems.append((f"{here}.filter", f"a sparkplug subscription filters topics under '{NAMESPACE}/'"))
            if sub.value_path is not None or sub.timestamp_path is not None:
                problems.append((f"{here}.format", "value_path and timestamp_path are for json payloads"))
        if sub.format == "number" and (sub.value_path is not None or sub.timestamp_path is not None):
            problems.append((f"{here}.format", "value_path and timestamp_path are for json payloads"))
        for key in ("value_path", "timestamp_path"):
            problems.extend(_path_problem(f"{here}.{key}", getattr(sub, key)))
        if sub.template is not None:
            try:
                templates.append((sub, Template.parse(sub.template)))
            except ValueError as exc:
                problems.append((f"{here}.template", str(exc)))
    for i, point in enumerate(device.points):
        problems.extend(_check_point(f"points[{i}]", point, templates))
    return problems


def _path_problem(where: str, text: str | None) -> list[tuple[str, str]]:
    if text is None:
        return []
    try:
        ValuePath.parse(text)
    except ValueError as exc:
        return [(where, str(exc))]
    return []


def _check_point(
    here: str, point: PointConfig, templates: list[tuple[Subscription, Template]]
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    a: MqttAddress = point.address
    fmt: Format | None = a.format
    if a.qos is not None and not 0 <= a.qos <= 2:
        problems.append((f"{here}.address.qos", "must be 0, 1 or 2"))
    for key in ("value_path", "timestamp_path"):
        problems.extend(_path_problem(f"{here}.address.{key}", getattr(a, key)))
    if a.topic is not None and a.is_sparkplug:
        problems.append(
            (f"{here}.address", "give either topic (json/number) or group/node/metric (sparkplug), not both")
        )
        return problems
    if a.topic is not None:
        if (problem := codec.topic_problem(a.topic)) is not None:
            problems.append((f"{here}.address.topic", problem))
        if fmt == "sparkplug":
            problems.append((f"{here}.address.format", "a sparkplug point is addressed by group, node, device, metric"))
    elif a.is_sparkplug:
        for key in ("group", "node", "metric"):
            if not getattr(a, key):
                problems.append((f"{here}.address.{key}", "a sparkplug point needs group, node and metric"))
        for key in ("group", "node", "device"):
            value = getattr(a, key)
            if value is not None and any(c in value for c in "/+#"):
                problems.append((f"{here}.address.{key}", "cannot contain '/', '+' or '#'"))
        if fmt not in (None, "sparkplug") or a.value_path is not None or a.timestamp_path is not None:
            problems.append((f"{here}.address", "format, value_path and timestamp_path do not apply to sparkplug"))
        if a.command_topic is not None:
            problems.append((f"{here}.address.command_topic", "sparkplug points are written with NCMD/DCMD"))
        fmt = "sparkplug"
    else:
        reachable = sorted((s for s, t in templates if _carries(s, t, point.id)), key=lambda s: s.format == "sparkplug")
        if not reachable:
            problems.append(
                (
                    f"{here}.address",
                    f"no subscription template yields '{point.id}'; give address.topic, "
                    "or group/node/metric, or add a subscription whose template produces it",
                )
            )
        else:
            fmt = fmt or reachable[0].format
    if fmt == "number" and point.type is DataType.STRING:
        problems.append((f"{here}.type", "a number payload cannot fill a string point; use format: json"))
    if fmt == "number" and (a.value_path is not None or a.timestamp_path is not None):
        problems.append((f"{here}.address", "value_path and timestamp_path are for json payloads"))
    if a.command_topic is not None:
        if (problem := codec.topic_problem(a.command_topic)) is not None:
            problems.append((f"{here}.address.command_topic", problem))
        if (
            a.value_path is not None
            and not _path_problem("", a.value_path)
            and not ValuePath.parse(a.value_path).writable
        ):
            problems.append((f"{here}.address.value_path", "a value path with [index] cannot be written"))
    if point.writable and a.command_topic is None and fmt != "sparkplug":
        problems.append((f"{here}.writable", "a writable MQTT point needs address.command_topic"))
    return problems
