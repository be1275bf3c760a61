"""What the gateway knows of each Sparkplug B edge node: its births, aliases, bdSeq and seq.

Pure state, no I/O: ``EdgeNodes.handle`` takes one decoded message and says which metrics changed,
which went dead, whether to ask the node for a rebirth, and what was wrong with the message.

- NBIRTH starts a node afresh (its metrics, aliases, ``bdSeq`` and ``seq``); DBIRTH does so for one
  device. Births and data carry values.
- Every message but NBIRTH/NDEATH carries ``seq``, counting 0..255 and wrapping per node. A gap
  marks the node's data Uncertain and asks for a rebirth until the next NBIRTH.
- NDEATH kills the node and its devices, but only if its ``bdSeq`` matches the live NBIRTH's
  (a stale death from an earlier session is ignored); DDEATH kills one device.
- Data from a node or device without a birth, or with an alias no birth declared, asks for a rebirth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.mqtt.sparkplug import BDSEQ_METRIC, Metric, Payload, RawValue, SparkplugError, Topic

_CONTROL_PREFIXES = ("Node Control/", "Device Control/", "Properties/")


def is_protocol_metric(name: str) -> bool:
    """Metrics that describe the Sparkplug session rather than the process."""
    return name == BDSEQ_METRIC or name.startswith(_CONTROL_PREFIXES)


@dataclass(slots=True)
class MetricUpdate:
    """A new value of one metric. ``value`` is None for a null metric."""

    device: str | None
    name: str
    value: RawValue | None
    timestamp_ms: int | None
    uncertain: bool


@dataclass(slots=True)
class Outcome:
    """What one Sparkplug message means for the gateway."""

    updates: list[MetricUpdate] = field(default_factory=list)
    dead: list[tuple[str | None, str]] = field(default_factory=list)
    """(device, metric name) pairs whose values are gone (NDEATH/DDEATH)."""
    death_reason: str = ""
    rebirth: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(kind, message) pairs to count and log."""


@dataclass(slots=True)
class _Births:
    """The metrics declared by one birth certificate: name -> datatype, alias -> name."""

    types: dict[str, int | None] = field(default_factory=dict)
    aliases: dict[int, str] = field(default_factory=dict)
    alive: bool = True

    @classmethod
    def of(cls, payload: Payload) -> _Births:
        b = cls()
        for m in payload.metrics:
            if m.name is None:
                continue
            b.types[m.name] = m.datatype
            if m.alias is not None:
                b.aliases[m.alias] = m.name
        return b


@dataclass(slots=True)
class _Node:
    bd_seq: int | None
    seq: int
    births: _Births
    devices: dict[str, _Births] = field(default_factory=dict)
    uncertain: bool = False
    alive: bool = True


class EdgeNodes:
    """The Sparkplug sessions of every edge node seen, keyed by (group, node)."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[str, str], _Node] = {}

    def reset(self) -> None:
        """Forget every node (after the gateway lost its broker connection: births must come again)."""
        self._nodes.clear()

    def is_uncertain(self, group: str, node: str) -> bool:
        n = self._nodes.get((group, node))
        return n is not None and n.uncertain

    def handle(self, topic: Topic, payload: Payload) -> Outcome:
        out = Outcome()
        key = (topic.group, topic.node)
        kind = topic.message_type
        where = f"{topic.group}/{topic.node}" + (f"/{topic.device}" if topic.device else "")
        if kind in ("NCMD", "DCMD"):
            return out
        if kind == "NBIRTH":
            bd = payload.metric(BDSEQ_METRIC)
            born = _Node(
                bd_seq=_as_int(bd),
                seq=payload.seq if payload.seq is not None else 0,
                births=_Births.of(payload),
            )
            self._nodes[key] = born
            if payload.seq is None:
                out.problems.append(("sparkplug_seq", f"NBIRTH of {where} has no seq"))
            self._values(out, born, None, born.births, payload)
            return out
        node = self._nodes.get(key)
        if kind == "NDEATH":
            self._node_death(out, node, payload, where)
            return out
        if node is None or not node.alive:
            out.rebirth = True
            out.problems.append(("sparkplug_no_birth", f"{kind} from {where} before its NBIRTH"))
            return out
        self._check_seq(out, node, payload, kind, where)
        device = topic.device
        if kind == "DBIRTH":
            assert device is not None
            births = _Births.of(payload)
            node.devices[device] = births
            self._values(out, node, device, births, payload)
        elif kind == "DDEATH":
            assert device is not None
            dev = node.devices.get(device)
            if dev is not None and dev.alive:
                dev.alive = False
                out.dead = [(device, name) for name in dev.types]
                out.death_reason = f"sparkplug death (device {where})"
        elif kind == "NDATA":
            self._values(out, node, None, node.births, payload)
        elif kind == "DDATA":
            assert device is not None
            dev = node.devices.get(device)
            if dev is None or not dev.alive:
                out.rebirth = True
                out.problems.append(("sparkplug_no_birth", f"DDATA from {where} before its DBIRTH"))
                return out
            self._values(out, node, device, dev, payload)
        return out

    def _node_death(self, out: Outcome, node: _Node | None, payload: Payload, where: str) -> None:
        if node is None or not node.alive:
            return
        bd = _as_int(payload.metric(BDSEQ_METRIC))
        if bd is not None and node.bd_seq is not None and bd != node.bd_seq:
            out.problems.append(
                (
                    "sparkplug_stale_death",
                    f"NDEATH of {where} with bdSeq {bd} ignored: the live NBIRTH has {node.bd_seq}",
                )
            )
            return
        node.alive = False
        out.dead = [(None, name) for name in node.births.types]
        for device, births in node.devices.items():
            out.dead.extend((device, name) for name in births.types)
        out.death_reason = f"sparkplug death (node {where})"

    @staticmethod
    def _check_seq(out: Outcome, node: _Node, payload: Payload, kind: str, where: str) -> None:
        expected = (node.seq + 1) % 256
        got = payload.seq
        if got is None:
            out.problems.append(("sparkplug_seq", f"{kind} from {where} has no seq"))
            return
        if got != expected:
            if not node.uncertain:
                out.problems.append(("sparkplug_seq_gap", f"{kind} from {where} has seq {got}, expected {expected}"))
            node.uncertain = True
            out.rebirth = True
        node.seq = got % 256

    @staticmethod
    def _values(out: Outcome, node: _Node, device: str | None, births: _Births, payload: Payload) -> None:
        for m in payload.metrics:
            name = m.name if m.name is not None else births.aliases.get(m.alias) if m.alias is not None else None
            where = f"{device or 'node'}"
            if name is None:
                out.rebirth = True
                out.problems.append(
                    ("sparkplug_unknown_alias", f"metric alias {m.alias} of {where} is not in its birth")
                )
                continue
            datatype = m.datatype if m.datatype is not None else births.types.get(name)
            try:
                value = m.value(datatype)
            except SparkplugError as exc:
                out.problems.append(("wrong_type", f"metric {name!r} of {where}: {exc}"))
                continue
            ts = m.timestamp if m.timestamp is not None else payload.timestamp
            out.updates.append(MetricUpdate(device, name, value, ts, node.uncertain))

    def datatype_of(self, group: str, node: str, device: str | None, name: str) -> int | None:
        """The data type a birth declared for a metric (for writes), or None."""
        n = self._nodes.get((group, node))
        if n is None:
            return None
        births = n.births if device is None else n.devices.get(device)
        return births.types.get(name) if births is not None else None


def _as_int(metric: Metric | None) -> int | None:
    if metric is None:
        return None
    try:
        value = metric.value()
    except SparkplugError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
