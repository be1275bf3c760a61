"""Alarm state machine: hysteresis, delays, rate of change, Bad quality, acknowledgement."""

from __future__ import annotations

import pytest

from avila_edge.config.expr import Sample
from avila_edge.config.twins import AlarmConfig, AlarmKind
from avila_edge.core import Quality
from avila_edge.twins.alarms import AcknowledgeError, Alarm, AlarmState


def feed(alarm: Alarm, values: list[tuple[float, float]]) -> list[str]:
    out = []
    for t, v in values:
        tr = alarm.update(Sample(v), t)
        if tr:
            out.append(f"{t:g}:{tr.transition}")
    return out


def test_high_limit_raises_and_clears_only_beyond_the_hysteresis_band() -> None:
    a = Alarm(AlarmConfig(id="hot", value="temp", kind=AlarmKind.HIGH, limit=80, hysteresis=5), "pump1")
    seq = [(0, 70), (1, 81), (2, 79), (3, 81), (4, 76), (5, 74.9), (6, 79)]
    assert feed(a, seq) == ["1:raised", "5:cleared"]
    assert a.state is AlarmState.CLEARED_UNACKED


def test_noise_around_the_limit_does_not_flap() -> None:
    a = Alarm(AlarmConfig(id="hot", value="temp", kind=AlarmKind.HIGH, limit=80, hysteresis=2), "pump1")
    noisy = [(t, 80 + (1.5 if t % 2 else -1.5)) for t in range(50)]
    assert feed(a, noisy) == ["1:raised"]


def test_delay_requires_the_condition_to_hold() -> None:
    a = Alarm(AlarmConfig(id="low", value="p", kind=AlarmKind.LOW, limit=2, delay=10, clear_delay=5), "pump1")
    seq = [(0, 1), (5, 3), (6, 1), (15, 1), (16, 1), (20, 3), (24, 3), (25, 3)]
    assert feed(a, seq) == ["16:raised", "25:cleared"]


def test_rate_of_change_alarm() -> None:
    a = Alarm(AlarmConfig(id="ramp", value="temp", kind=AlarmKind.RATE, limit=0.5, window=10), "pump1")
    seq = [(t, 20 + 0.1 * t) for t in range(20)] + [(20 + t, 22 + 2 * t) for t in range(1, 6)]
    assert feed(a, seq) == ["23:raised"]  # the mean rate over 10 s first exceeds 0.5/s at t=23


def test_bad_quality_for_longer_than_n_seconds() -> None:
    a = Alarm(AlarmConfig(id="comms", value="flow", kind=AlarmKind.BAD_QUALITY, delay=30), "pump1")
    bad = Sample(None, Quality.BAD, "timeout")
    assert a.update(bad, 0) is None
    assert a.update(bad, 29) is None
    raised = a.update(bad, 31)
    assert raised is not None and raised.transition == "raised"
    cleared = a.update(Sample(1.0), 40)
    assert cleared is not None and cleared.transition == "cleared"


def test_bad_input_freezes_a_limit_alarm() -> None:
    a = Alarm(AlarmConfig(id="hot", value="temp", kind=AlarmKind.HIGH, limit=80), "pump1")
    a.update(Sample(90), 0)
    assert a.update(Sample(None, Quality.BAD, "timeout"), 1) is None
    assert a.state is AlarmState.ACTIVE


def test_acknowledgement_follows_isa_18_2() -> None:
    a = Alarm(AlarmConfig(id="hot", value="temp", kind=AlarmKind.HIGH, limit=80), "pump1")
    with pytest.raises(AcknowledgeError, match="nothing to acknowledge"):
        a.acknowledge("op")
    a.update(Sample(90), 0)
    ack = a.acknowledge("operator1")
    assert (ack.transition, ack.state, ack.by) == ("acknowledged", AlarmState.ACKNOWLEDGED, "operator1")
    cleared = a.update(Sample(70), 1)
    assert cleared is not None and cleared.state is AlarmState.NORMAL
    a.update(Sample(90), 2)
    a.update(Sample(70), 3)
    assert a.state is AlarmState.CLEARED_UNACKED
    assert a.acknowledge("op").state is AlarmState.NORMAL
