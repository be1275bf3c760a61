"""Derived-property expressions: safe parsing, quality propagation, rolling windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avila_edge.config.expr import Expression, ExpressionError, Sample
from avila_edge.core import Quality


def good(**values: float) -> dict[str, Sample]:
    return {k.replace("__", "."): Sample(v) for k, v in values.items()}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("flow * 2 + 1", 21.0),
        ("max(flow, pressure, 3) - min(flow, 1)", 9.0),
        ("abs(-flow) / 4", 2.5),
        ("sqrt(pressure ** 2)", 4.0),
        ("clamp(flow, 0, 5)", 5.0),
        ("flow > 5 and pressure < 5", True),
        ("1 < pressure <= 4 < flow", True),
        ("flow if pressure > 100 else -1", -1.0),
        ("not (flow > 5)", False),
        ("pump2.flow + flow", 13.0),
        ("flow % 3", 1.0),
    ],
)
def test_expressions_compute_like_arithmetic(text: str, value: object) -> None:
    result = Expression(text).evaluate(good(flow=10.0, pressure=4.0, pump2__flow=3.0), 0.0)
    assert result.quality is Quality.GOOD
    assert result.value == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('x')", "not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("flow.__class__", "not a point name"),
        ("[x for x in flow]", "not allowed"),
        ("open('f')", "unknown function 'open'"),
        ("'text'", "only numbers"),
        ("lambda: 1", "not allowed"),
        ("flow +", "not a valid expression"),
        ("mean(flow)", "takes 2 arguments"),
        ("mean(flow, 'soon')", "window must be"),
        ("x" * 600, "longer than"),
    ],
)
def test_unsafe_or_invalid_text_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(text)


def test_names_lists_every_input() -> None:
    assert Expression("flow / max(pressure, pump2.flow)").names == {"flow", "pressure", "pump2.flow"}


def test_a_bad_input_makes_the_result_bad_naming_it() -> None:
    inputs = {"flow": Sample(None, Quality.BAD, "timeout"), "pressure": Sample(4.0)}
    result = Expression("flow / pressure").evaluate(inputs, 0.0)
    assert result.quality is Quality.BAD
    assert result.reason == "input flow is Bad: timeout"


def test_an_uncertain_input_makes_the_result_uncertain() -> None:
    inputs = {"flow": Sample(2.0, Quality.UNCERTAIN, "stale"), "pressure": Sample(4.0)}
    result = Expression("flow * pressure").evaluate(inputs, 0.0)
    assert result.value == 8.0
    assert result.quality is Quality.UNCERTAIN
    assert "flow" in result.reason


def test_missing_input_and_division_by_zero_are_bad() -> None:
    assert Expression("flow / pressure").evaluate(good(flow=1.0), 0).reason == "no value yet for pressure"
    assert Expression("flow / pressure").evaluate(good(flow=1.0, pressure=0.0), 0).reason == "division by zero"
    assert Expression("10 ** 1000").evaluate({}, 0).quality is Quality.BAD


def test_rolling_windows_forget_old_samples() -> None:
    e = Expression("mean(v, 10)")
    r = Expression('rms(v, "10s")')
    rate = Expression("rate(v, 60)")
    for t, v in [(0, 1.0), (5, 3.0), (20, 5.0)]:
        m, q, d = e.evaluate(good(v=v), t), r.evaluate(good(v=v), t), rate.evaluate(good(v=v), t)
    assert m.value == 5.0  # samples at 0 and 5 are older than 10 s at t=20
    assert q.value == 5.0
    assert d.value == pytest.approx((5.0 - 1.0) / 20)
    two = Expression("mean(v, 10)")
    two.evaluate(good(v=2.0), 0)
    assert two.evaluate(good(v=4.0), 1).value == 3.0
    rms = Expression("rms(v, 10)")
    rms.evaluate(good(v=3.0), 0)
    assert rms.evaluate(good(v=4.0), 1).value == pytest.approx(math.sqrt(12.5))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_compiles_or_is_refused_and_never_runs_code(text: str) -> None:
    try:
        e = Expression(text)
    except ExpressionError:
        return
    result = e.evaluate({n: Sample(1.0) for n in e.names}, 0.0)
    assert result.quality in (Quality.GOOD, Quality.BAD, Quality.UNCERTAIN)
