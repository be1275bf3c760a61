"""Twin state: versions, optimistic concurrency, delta and write confirmation."""

from __future__ import annotations

import pytest

from avila_edge.core import Quality, Reading
from avila_edge.twins.state import StaleVersion, TwinState, WriteStatus


def reading(value: float, quality: Quality = Quality.GOOD) -> Reading:
    return Reading(point="pump1/speed", value=value, quality=quality, reason="" if quality is Quality.GOOD else "x",
                   ts_source=1, ts_gateway=1)  # fmt: skip


def test_desired_update_with_a_stale_version_is_refused() -> None:
    twin = TwinState("pump1")
    first = twin.request("speed", 1500, expected_version=0, by="op", now_ns=1, deadline=10)
    assert first.version == 1
    twin.request("speed", 1600, expected_version=1, by="op", now_ns=2, deadline=10)
    with pytest.raises(StaleVersion, match="version 1 is stale; the current version is 2"):
        twin.request("speed", 1700, expected_version=1, by="other", now_ns=3, deadline=10)
    assert twin.desired["speed"].value == 1600


def test_a_matching_reading_confirms_within_tolerance_and_clears_the_delta() -> None:
    twin = TwinState("pump1")
    twin.request("speed", 1500.0, expected_version=None, by="op", now_ns=1, deadline=10)
    assert twin.delta() == {"speed": 1500.0}
    assert twin.report("speed", reading(1400.0), tolerance=5.0) is None
    assert twin.report("speed", reading(1497.0, Quality.UNCERTAIN), tolerance=5.0) is None
    confirmed = twin.report("speed", reading(1497.0), tolerance=5.0)
    assert confirmed is not None and confirmed.status is WriteStatus.CONFIRMED
    assert twin.delta({"speed": 5.0}) == {}


def test_overdue_writes_are_listed_and_can_fail_once() -> None:
    twin = TwinState("pump1")
    twin.request("speed", 1500, expected_version=None, by="op", now_ns=1, deadline=10)
    assert twin.overdue(5) == []
    assert twin.overdue(11) == ["speed"]
    failed = twin.settle("speed", WriteStatus.FAILED, "not confirmed within 10 s")
    assert failed is not None and failed.reason == "not confirmed within 10 s"
    assert twin.settle("speed", WriteStatus.FAILED, "again") is None


def test_every_change_bumps_the_twin_version() -> None:
    twin = TwinState("pump1")
    v0 = twin.version
    twin.report("speed", reading(1.0), tolerance=0)
    twin.request("speed", 2, expected_version=None, by="op", now_ns=1, deadline=1)
    assert twin.version == v0 + 2
