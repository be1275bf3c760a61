"""The block planner issues the fewest requests the merging rules allow."""

from __future__ import annotations

from avila_edge.config.model import DeviceConfig
from drivers.modbus.planner import plan

from .conftest import device, point


def requests(dev: DeviceConfig) -> list[tuple[str, int, int]]:
    return [(b.table, b.start, b.count) for b in plan(dev)]


def test_adjacent_registers_merge_into_one_request() -> None:
    dev = device(502, [point(f"p/a{i}", "holding", i * 2) for i in range(10)])
    assert requests(dev) == [("holding", 0, 20)]


def test_a_gap_larger_than_max_gap_splits_the_block() -> None:
    pts = [point("p/a", "holding", 0), point("p/b", "holding", 10), point("p/c", "holding", 30)]
    assert requests(device(502, pts, max_gap=8)) == [("holding", 0, 12), ("holding", 30, 2)]
    assert requests(device(502, pts, max_gap=18)) == [("holding", 0, 32)]


def test_blocks_never_exceed_the_protocol_limit() -> None:
    pts = [point(f"p/r{i}", "holding", i, "uint16") for i in range(300)]
    blocks = plan(device(502, pts))
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (125, 125), (250, 50)]
    bits = [point(f"p/c{i}", "coil", i, "bool") for i in range(4500)]
    assert [(b.start, b.count) for b in plan(device(502, bits))] == [(0, 2000), (2000, 2000), (4000, 500)]


def test_tables_units_and_intervals_are_separate_requests() -> None:
    pts = [
        point("p/a", "holding", 0),
        point("p/b", "input", 2),
        point("p/c", "holding", 2, unit_id=2),
        point("p/d", "holding", 4, poll_interval=5.0),
        point("p/e", "coil", 0, "bool"),
        point("p/f", "coil", 40, "bool"),
    ]
    assert sorted(requests(device(502, pts))) == sorted(
        [("holding", 0, 2), ("holding", 4, 2), ("coil", 0, 41), ("input", 2, 2), ("holding", 2, 2)]
    )


def test_overlapping_points_share_registers() -> None:
    pts = [
        point("p/f", "holding", 0, "float32"),
        point("p/hi", "holding", 0, "uint16"),
        point("p/s", "holding", 1, "bool", bit=3),
    ]
    (block,) = plan(device(502, pts))
    assert (block.start, block.count) == (0, 2)
    assert sorted(block.offsets) == [0, 0, 1]
    assert {p.id for p in block.points} == {"p/f", "p/hi", "p/s"}
