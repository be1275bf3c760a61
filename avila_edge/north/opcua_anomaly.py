"""Anomaly nodes of the OPC UA server: each anomaly detector's latest judgement of an asset, as the
twin shows it (``snapshot()["anomaly"][<detector>]``, written by the anomaly service), read-only.

Under each asset object that a detector watches::

    Anomaly/                   folder            s=<asset>/anomaly
      <detector>/              object            s=<asset>/anomaly/<detector>
        Active                 Boolean           an anomaly is active (hysteresis applied)
        Since                  DateTime          when the active anomaly started; the null DateTime
                                                 (1601-01-01, encoded 0) when none is
        Score                  Double            the latest window's score
        Threshold              Double            the threshold it is judged against (learned or manual)
        Learning               Boolean           the threshold is still learning (warm-up)
        Detector               String            baseline / onnx
        Model                  String            name@version of the ONNX model; empty for the baseline
        Explanation            String            top features: "flow.mean 62% (12.1, expected 20.3); ..."
        Problem                String            why the detector is idle; empty while it judges

Status is Good, except ``BadWaitingForInitialData`` before the detector's first judgement (and for
Score and Threshold while they have no value yet). Source timestamps are the anomaly's times: the
start of the anomaly for Active and Since while one is active, otherwise the end of the window the
value was judged on. When an anomaly starts, a ``BaseEventType`` event (severity 700) is emitted
from the Server object with the detector object as its source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uatypes import FILETIME_EPOCH_AS_UTC_DATETIME

from avila_edge.config.model import GatewayConfig
from avila_edge.north import naming
from avila_edge.north.opcua_values import node_id, status, to_datetime

FIELDS: Final = {
    "Active": ua.VariantType.Boolean,
    "Since": ua.VariantType.DateTime,
    "Score": ua.VariantType.Double,
    "Threshold": ua.VariantType.Double,
    "Learning": ua.VariantType.Boolean,
    "Detector": ua.VariantType.String,
    "Model": ua.VariantType.String,
    "Explanation": ua.VariantType.String,
    "Problem": ua.VariantType.String,
}
START_SEVERITY: Final = 700
NULL_DATETIME: Final = FILETIME_EPOCH_AS_UTC_DATETIME
"""OPC UA's null DateTime (encoded 0): asyncua refuses a null variant on a DateTime variable with a Good status."""


def detectors(config: GatewayConfig) -> dict[str, list[str]]:
    """The detector ids that watch each asset, paired as the anomaly service pairs them: a detector
    of the asset's type, replaced by the asset's own detector of the same id."""
    if not config.anomaly.enabled:
        return {}
    found: dict[str, dict[str, None]] = {}
    for a in config.assets:
        for d in config.anomaly.detectors:
            if d.asset_type is not None and d.asset_type == a.type:
                found.setdefault(a.id, {})[d.id] = None
    for d in config.anomaly.detectors:
        if d.asset is not None:
            found.setdefault(d.asset, {})[d.id] = None
    return {asset: list(ids) for asset, ids in found.items()}


def explanation(top: object) -> str:
    """The contributing features as one line, largest share first."""
    parts = []
    for t in top if isinstance(top, list) else ():
        share = t.get("share")
        text = f"{t.get('feature')} {share:.0%}" if isinstance(share, int | float) else str(t.get("feature"))
        if t.get("value") is not None:
            text += f" ({t['value']:.6g}, expected {t.get('expected', float('nan')):.6g})"
        parts.append(text)
    return "; ".join(parts)


def values(info: Mapping[str, Any], now_ns: int) -> dict[str, ua.DataValue]:
    """The variables of one detector from its entry in the twin."""
    judged = info.get("window_end")
    judged_ns = judged if isinstance(judged, int) else now_ns
    active = info.get("active") is True
    since = info.get("since") if active and isinstance(info.get("since"), int) else None
    started_ns = since if since is not None else judged_ns
    waiting = status(naming.BAD_WAITING_FOR_INITIAL_DATA)

    def number(key: str) -> tuple[object, ua.StatusCode | None]:
        v = info.get(key)
        return (float(v), None) if isinstance(v, int | float) and not isinstance(v, bool) else (None, waiting)

    shown: dict[str, tuple[object, ua.StatusCode | None, int]] = {
        "Active": (active, None, started_ns),
        "Since": (NULL_DATETIME if since is None else to_datetime(since), None, started_ns),
        "Score": (*number("score"), judged_ns),
        "Threshold": (*number("threshold"), judged_ns),
        "Learning": (info.get("learning") is True, None, judged_ns),
        "Detector": (str(info.get("detector") or ""), None, judged_ns),
        "Model": (str(info.get("model") or ""), None, judged_ns),
        "Explanation": (explanation(info.get("top")), None, judged_ns),
        "Problem": (str(info.get("problem") or ""), None, judged_ns),
    }
    out = {}
    for name, (value, code, ts) in shown.items():
        variant = ua.Variant(value, FIELDS[name]) if value is not None else ua.Variant(None)
        out[name] = ua.DataValue(
            Value=variant,
            StatusCode=code or status(naming.GOOD),
            SourceTimestamp=to_datetime(ts),  # type: ignore[arg-type]
            ServerTimestamp=to_datetime(now_ns),  # type: ignore[arg-type]
        )
    return out


def node_key(asset: str, detector: str, name: str = "") -> str:
    base = f"{asset}/anomaly/{detector}"
    return f"{base}/{name}" if name else base


class AnomalyNodes:
    """The anomaly part of the address space, and showing the twins' anomaly entries in it."""

    def __init__(self, detectors: Mapping[str, Sequence[str]]) -> None:
        self._detectors = {asset: list(ids) for asset, ids in detectors.items()}
        self._nodes: dict[str, ua.NodeId] = {}
        self._objects: dict[tuple[str, str], ua.NodeId] = {}
        self._shown: dict[str, tuple[object, int]] = {}  # key -> (value, status code) written
        self._active: dict[tuple[str, str], bool] = {}
        self._events: EventGenerator | None = None

    async def add(self, server: Server, obj: Node, asset: str, ns: int) -> None:
        """The ``Anomaly`` folder under the asset's object, when a detector watches the asset."""
        ids = self._detectors.get(asset)
        if not ids:
            return
        folder = await obj.add_folder(node_id(f"{asset}/anomaly", ns), ua.QualifiedName("Anomaly", ns))
        waiting = ua.DataValue(Value=ua.Variant(None), StatusCode=status(naming.BAD_WAITING_FOR_INITIAL_DATA))
        for detector in ids:
            holder = await folder.add_object(node_id(node_key(asset, detector), ns), ua.QualifiedName(detector, ns))
            self._objects[asset, detector] = holder.nodeid
            for name, kind in FIELDS.items():
                key = node_key(asset, detector, name)
                node = await holder.add_variable(node_id(key, ns), ua.QualifiedName(name, ns), ua.Variant(None),
                                                 datatype=ua.NodeId(ua.Int32(int(kind))))  # fmt: skip
                await node.write_attribute(AttributeIds.Value, waiting)  # read-only: asyncua's default access
                self._nodes[key] = node.nodeid
        if self._events is None:
            self._events = await server.get_event_generator(ObjectIds.BaseEventType, ObjectIds.Server)

    async def show(self, server: Server, asset: str, anomaly: object, now_ns: int) -> int:
        """Write the variables of ``asset`` that changed; return how many were written."""
        written = 0
        for detector in self._detectors.get(asset, ()):
            info = anomaly.get(detector) if isinstance(anomaly, dict) else None
            if not isinstance(info, dict):
                continue
            for name, dv in values(info, now_ns).items():
                key = node_key(asset, detector, name)
                assert dv.Value is not None
                assert dv.StatusCode is not None
                shown = (dv.Value.Value, dv.StatusCode.value)
                if self._shown.get(key) == shown:
                    continue  # unchanged: keeps the time it took this value
                self._shown[key] = shown
                await server.write_attribute_value(self._nodes[key], dv)
                written += 1
            active = info.get("active") is True
            before = self._active.get((asset, detector))
            self._active[asset, detector] = active
            if active and before is False:
                await self._started(asset, detector, info, now_ns)
        return written

    async def _started(self, asset: str, detector: str, info: Mapping[str, Any], now_ns: int) -> None:
        events = self._events
        if events is None:
            return
        event = events.event
        event.SourceNode = self._objects[asset, detector]
        event.SourceName = f"{asset}/{detector}"
        event.Severity = START_SEVERITY
        since = info.get("since")
        when = to_datetime(since if isinstance(since, int) else now_ns)
        score, threshold = info.get("score"), info.get("threshold")
        message = f"anomaly on {asset}/{detector}: score {score} over threshold {threshold}"
        if top := explanation(info.get("top")):
            message += f"; {top}"
        await events.trigger(time_attr=when, message=message)


__all__ = ["FIELDS", "NULL_DATETIME", "AnomalyNodes", "detectors", "explanation", "values"]
