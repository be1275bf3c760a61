"""The Sparkplug session state: births, aliases, seq gaps, bdSeq-matched deaths."""

from __future__ import annotations

from drivers.mqtt.edge_nodes import EdgeNodes, Outcome
from drivers.mqtt.sparkplug import DataType, Metric, Payload, Topic

G, N = "plant", "edge1"


def m(
    name: str | None = None, alias: int | None = None, value: object = 1.0, dt: int | None = DataType.DOUBLE
) -> Metric:
    field = 14 if isinstance(value, bool) else 11 if isinstance(value, int) else 13
    return Metric(name=name, alias=alias, datatype=dt, raw=value, value_field=field)  # type: ignore[arg-type]


def nbirth(nodes: EdgeNodes, bd_seq: int = 0) -> Outcome:
    payload = Payload(timestamp=1, seq=0, metrics=[m("bdSeq", None, bd_seq, DataType.UINT64), m("uptime", 1, 5.0)])
    return nodes.handle(Topic(G, "NBIRTH", N), payload)


def dbirth(nodes: EdgeNodes, seq: int, device: str = "pump1") -> Outcome:
    payload = Payload(timestamp=1, seq=seq, metrics=[m("flow", 10, 12.0), m("speed", 11, 1500.0)])
    return nodes.handle(Topic(G, "DBIRTH", N, device), payload)


def ddata(nodes: EdgeNodes, seq: int, flow: float = 13.0, device: str = "pump1", alias: int = 10) -> Outcome:
    return nodes.handle(
        Topic(G, "DDATA", N, device), Payload(timestamp=2, seq=seq, metrics=[m(None, alias, flow, None)])
    )


def values(out: Outcome) -> dict[tuple[str | None, str], object]:
    return {(u.device, u.name): u.value for u in out.updates}


def test_births_declare_metrics_and_data_by_alias_resolves_to_their_names() -> None:
    nodes = EdgeNodes()
    assert values(nbirth(nodes)) == {(None, "bdSeq"): 0, (None, "uptime"): 5.0}
    assert values(dbirth(nodes, 1)) == {("pump1", "flow"): 12.0, ("pump1", "speed"): 1500.0}
    out = ddata(nodes, 2)
    assert values(out) == {("pump1", "flow"): 13.0}
    assert not out.rebirth
    assert not out.updates[0].uncertain
    assert out.problems == []


def test_seq_wraps_from_255_to_0_without_a_gap() -> None:
    nodes = EdgeNodes()
    nbirth(nodes)
    dbirth(nodes, 1)
    for seq in range(2, 256):
        assert not ddata(nodes, seq).rebirth
    out = ddata(nodes, 0)
    assert not out.rebirth
    assert not out.updates[0].uncertain


def test_a_seq_gap_asks_for_rebirth_and_marks_data_uncertain_until_the_next_nbirth() -> None:
    nodes = EdgeNodes()
    nbirth(nodes)
    dbirth(nodes, 1)
    out = ddata(nodes, 5)
    assert out.rebirth
    assert out.updates[0].uncertain
    assert [k for k, _ in out.problems] == ["sparkplug_seq_gap"]
    later = ddata(nodes, 6)
    assert later.updates[0].uncertain
    assert nodes.is_uncertain(G, N)
    nbirth(nodes)
    dbirth(nodes, 1)
    after = ddata(nodes, 2)
    assert not after.updates[0].uncertain
    assert not nodes.is_uncertain(G, N)


def test_data_before_any_birth_asks_for_rebirth_and_yields_nothing() -> None:
    nodes = EdgeNodes()
    out = ddata(nodes, 3)
    assert out.rebirth
    assert out.updates == []
    assert [k for k, _ in out.problems] == ["sparkplug_no_birth"]


def test_device_data_before_its_dbirth_asks_for_rebirth() -> None:
    nodes = EdgeNodes()
    nbirth(nodes)
    out = ddata(nodes, 1)
    assert out.rebirth
    assert [k for k, _ in out.problems] == ["sparkplug_no_birth"]


def test_an_alias_no_birth_declared_asks_for_rebirth() -> None:
    nodes = EdgeNodes()
    nbirth(nodes)
    dbirth(nodes, 1)
    out = ddata(nodes, 2, alias=99)
    assert out.rebirth
    assert [k for k, _ in out.problems] == ["sparkplug_unknown_alias"]


def test_ndeath_with_the_live_bdseq_kills_the_node_and_its_devices() -> None:
    nodes = EdgeNodes()
    nbirth(nodes, bd_seq=4)
    dbirth(nodes, 1)
    death = Payload(metrics=[m("bdSeq", None, 4, DataType.UINT64)])
    out = nodes.handle(Topic(G, "NDEATH", N), death)
    assert set(out.dead) == {(None, "bdSeq"), (None, "uptime"), ("pump1", "flow"), ("pump1", "speed")}
    assert out.death_reason == "sparkplug death (node plant/edge1)"
    assert ddata(nodes, 2).rebirth  # dead until the next NBIRTH


def test_a_stale_ndeath_from_an_earlier_session_is_ignored() -> None:
    nodes = EdgeNodes()
    nbirth(nodes, bd_seq=5)
    dbirth(nodes, 1)
    out = nodes.handle(Topic(G, "NDEATH", N), Payload(metrics=[m("bdSeq", None, 4, DataType.UINT64)]))
    assert out.dead == []
    assert [k for k, _ in out.problems] == ["sparkplug_stale_death"]
    assert values(ddata(nodes, 2)) == {("pump1", "flow"): 13.0}


def test_ddeath_kills_one_device_and_counts_in_seq() -> None:
    nodes = EdgeNodes()
    nbirth(nodes)
    dbirth(nodes, 1)
    dbirth(nodes, 2, device="pump2")
    out = nodes.handle(Topic(G, "DDEATH", N, "pump1"), Payload(seq=3))
    assert set(out.dead) == {("pump1", "flow"), ("pump1", "speed")}
    assert out.death_reason == "sparkplug death (device plant/edge1/pump1)"
    assert not ddata(nodes, 4, device="pump2", alias=10).rebirth


def test_reset_forgets_births_so_data_asks_for_rebirth() -> None:
    nodes = EdgeNodes()
    nbirth(nodes)
    dbirth(nodes, 1)
    nodes.reset()
    assert ddata(nodes, 2).rebirth


def test_signed_metrics_in_data_use_the_datatype_from_the_birth() -> None:
    nodes = EdgeNodes()
    nodes.handle(
        Topic(G, "NBIRTH", N),
        Payload(seq=0, metrics=[Metric(name="t", alias=1, datatype=DataType.INT16, raw=1, value_field=10)]),
    )
    out = nodes.handle(Topic(G, "NDATA", N), Payload(seq=1, metrics=[Metric(alias=1, raw=0xFFFFFFFE, value_field=10)]))
    assert values(out) == {(None, "t"): -2}
