"""Pure MQTT payload conversions: golden cases and property-based fuzzing."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from avila_edge.config.model import DataType, PointConfig
from avila_edge.driver.scaling import to_engineering
from drivers.mqtt import codec
from drivers.mqtt.codec import PayloadError, Template, ValuePath
from drivers.mqtt.config import MqttAddress

level = st.text(alphabet="abc+#", min_size=0, max_size=3)
plain_level = st.text(alphabet="abcxyz", min_size=1, max_size=3)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("plant/+/flow", "plant/pump1/flow", True),
        ("plant/+/flow", "plant/pump1/pressure", False),
        ("plant/#", "plant", True),
        ("plant/#", "plant/a/b/c", True),
        ("plant/+", "plant/a/b", False),
        ("#", "$SYS/broker/uptime", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/broker", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/+/+", "a//", True),
    ],
)
def test_topic_matches_follows_mqtt_wildcard_rules(topic_filter: str, topic: str, expected: bool) -> None:
    assert codec.topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "problem"),
    [
        ("a/#/b", "'#' must be a whole level and the last one"),
        ("a/b#", "'#' must be a whole level and the last one"),
        ("a/b+/c", "'+' must be a whole level"),
        ("", "a topic filter cannot be empty"),
        ("a/+/#", None),
        ("#", None),
    ],
)
def test_filter_problem_explains_invalid_filters(topic_filter: str, problem: str | None) -> None:
    assert codec.filter_problem(topic_filter) == problem


def test_topic_problem_refuses_wildcards_in_exact_topics() -> None:
    assert codec.topic_problem("plant/+/x") is not None
    assert codec.topic_problem("plant/#") is not None
    assert codec.topic_problem("plant/pump1/flow") is None


@given(
    st.lists(level, min_size=1, max_size=4),
    st.lists(level, min_size=1, max_size=4),
    st.lists(plain_level, min_size=1, max_size=5),
)
def test_a_covering_filter_matches_every_topic_the_covered_filter_matches(
    outer: list[str], inner: list[str], topic: list[str]
) -> None:
    o, i, t = "/".join(outer), "/".join(inner), "/".join(topic)
    if codec.filter_problem(o) or codec.filter_problem(i):
        return
    if codec.filter_covers(o, i) and codec.topic_matches(i, t):
        assert codec.topic_matches(o, t)


@pytest.mark.parametrize(
    ("template", "topic", "point"),
    [
        ("plant/{asset}/{point}", "plant/pump1/flow", "pump1/flow"),
        ("plant/{asset}/{point}", "plant/pump1/flow/x", None),
        ("site/+/{asset}/{point}", "site/hall3/pump1/flow", "pump1/flow"),
        ("sensors/{asset}-{point}", "sensors/pump1-flow", "pump1/flow"),
        ("{point}/of/{asset}", "flow/of/pump1", "pump1/flow"),
        ("a/{asset}/{point}/#", "a/p/q", "p/q"),
        ("a/{asset}/{point}/#", "a/p/q/r/s", "p/q"),
        ("a.b/{asset}/{point}", "aXb/p/q", None),
    ],
)
def test_template_turns_a_topic_into_a_point_id(template: str, topic: str, point: str | None) -> None:
    assert Template.parse(template).match(topic) == point


@pytest.mark.parametrize(
    "template",
    [
        "plant/{asset}",
        "plant/{asset}/{point}/{point}",
        "plant/{device}/{point}",
        "p/#/{asset}/{point}",
        "p/{asset/{point}",
    ],
)
def test_template_refuses_malformed_patterns(template: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        Template.parse(template)


def test_template_render_gives_the_topic_of_a_point() -> None:
    assert Template.parse("plant/+/{asset}/{point}").render("pump1/flow") == "plant/+/pump1/flow"


@pytest.mark.parametrize(
    ("path", "doc", "value"),
    [
        ("$", 5, 5),
        ("$.v", {"v": 1.5}, 1.5),
        ("$.a.b", {"a": {"b": "x"}}, "x"),
        ("$.data[1].v", {"data": [{"v": 1}, {"v": 2}]}, 2),
        ("$['key with space']", {"key with space": True}, True),
        ('$["q"]', {"q": None}, None),
    ],
)
def test_value_path_finds_the_value_in_a_document(path: str, doc: Any, value: Any) -> None:
    assert ValuePath.parse(path).evaluate(doc) == value


@pytest.mark.parametrize(("path", "doc"), [("$.v", {"w": 1}), ("$.v", [1]), ("$[3]", [1]), ("$.a.b", {"a": 5})])
def test_value_path_reports_a_missing_value(path: str, doc: Any) -> None:
    with pytest.raises(PayloadError) as info:
        ValuePath.parse(path).evaluate(doc)
    assert info.value.kind == "missing_value"


@pytest.mark.parametrize("path", ["v", "$.", "$..a", "$[x]", "$.a b"])
def test_value_path_refuses_unknown_syntax(path: str) -> None:
    with pytest.raises(ValueError, match="value path"):
        ValuePath.parse(path)


@given(st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True), max_size=4), st.integers() | st.text())
def test_value_path_build_is_the_inverse_of_evaluate(keys: list[str], value: Any) -> None:
    path = ValuePath.parse("$" + "".join(f".{k}" for k in keys))
    assert path.evaluate(path.build(value)) == value


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"\xff\xfe", "invalid_utf8"),
        (b'{"v": "\xc3\x28"}', "invalid_utf8"),
        (b'{"v": 1', "invalid_json"),
        (b"", "invalid_json"),
        (b"{'v': 1}", "invalid_json"),
        (b"NaN", "invalid_json"),
        (b"1e999", "invalid_json"),
    ],
)
def test_decode_json_names_the_kind_of_malformed_payload(payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        codec.decode_json(payload)
    assert info.value.kind == kind


@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"21.5", 21.5), (b" -3\n", -3), (b"1e3", 1000.0), (b"true", True), (b"OFF", False), (b"0", 0)],
)
def test_decode_number_reads_plain_text_numbers_and_words(payload: bytes, value: Any) -> None:
    decoded = codec.decode_number(payload)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("payload", "kind"), [(b"abc", "invalid_number"), (b"", "invalid_number"), (b"\xff", "invalid_utf8")]
)
def test_decode_number_refuses_what_is_not_a_number(payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        codec.decode_number(payload)
    assert info.value.kind == kind


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        (True, DataType.BOOL, True),
        (0, DataType.BOOL, False),
        ("on", DataType.BOOL, True),
        (3, DataType.FLOAT64, 3.0),
        (2.0, DataType.INT16, 2),
        (65535, DataType.UINT16, 65535),
        ("text", DataType.STRING, "text"),
    ],
)
def test_coerce_converts_to_the_point_type(raw: Any, kind: DataType, value: Any) -> None:
    result = codec.coerce(raw, kind)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("12", DataType.FLOAT32),
        (True, DataType.FLOAT64),
        (None, DataType.FLOAT64),
        ({"v": 1}, DataType.FLOAT64),
        ([1], DataType.INT32),
        (2.5, DataType.INT16),
        (70000, DataType.INT16),
        (-1, DataType.UINT32),
        (math.inf, DataType.FLOAT64),
        (math.nan, DataType.FLOAT32),
        (7, DataType.STRING),
        (2, DataType.BOOL),
    ],
)
def test_coerce_refuses_wrong_types_and_ranges(raw: Any, kind: DataType) -> None:
    with pytest.raises(PayloadError) as info:
        codec.coerce(raw, kind)
    assert info.value.kind == "wrong_type"


@pytest.mark.parametrize(
    ("raw", "ns"),
    [
        (1_700_000_000, 1_700_000_000_000_000_000),
        (1_700_000_000.5, 1_700_000_000_500_000_000),
        (1_700_000_000_123, 1_700_000_000_123_000_000),
        (1_700_000_000_123_456, 1_700_000_000_123_456_000),
        (1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
        ("2023-11-14T23:13:20.250+01:00", 1_700_000_000_250_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000_000_000_000),
        ("1700000000123", 1_700_000_000_123_000_000),
    ],
)
def test_parse_timestamp_reads_epoch_units_and_iso_8601(raw: Any, ns: int) -> None:
    assert codec.parse_timestamp(raw) == ns


@pytest.mark.parametrize("raw", ["yesterday", True, None, [1], -5, math.nan, "10000-01-01T00:00:00"])
def test_parse_timestamp_refuses_what_is_not_a_time(raw: Any) -> None:
    with pytest.raises(PayloadError) as info:
        codec.parse_timestamp(raw)
    assert info.value.kind == "bad_timestamp"


@given(st.binary(max_size=200))
def test_decoding_any_bytes_raises_only_payload_errors(payload: bytes) -> None:
    for decode in (codec.decode_json, codec.decode_number):
        with contextlib.suppress(PayloadError):
            decode(payload)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=8,
    )
)
def test_coercing_and_timestamping_any_json_value_raises_only_payload_errors(raw: Any) -> None:
    for kind in DataType:
        with contextlib.suppress(PayloadError):
            codec.coerce(raw, kind)
    with contextlib.suppress(PayloadError):
        codec.parse_timestamp(raw)


def _point(kind: DataType, scale: float = 1.0, offset: float = 0.0) -> PointConfig:
    return PointConfig(id="a/b", address=MqttAddress(), type=kind, scale=scale, offset=offset)


def test_engineering_values_apply_scale_and_offset_to_numbers_only() -> None:
    assert to_engineering(100, _point(DataType.INT16, 0.1, -5.0)) == pytest.approx(5.0)
    assert to_engineering(7, _point(DataType.INT16)) == 7
    assert to_engineering(True, _point(DataType.BOOL, 10.0)) is True


@given(st.integers(-30000, 30000), st.sampled_from([0.1, 0.5, 2.0, 10.0]), st.sampled_from([0.0, -5.0, 3.0]))
def test_from_engineering_inverts_to_engineering_for_integers(raw: int, scale: float, offset: float) -> None:
    p = _point(DataType.INT32, scale, offset)
    assert codec.from_engineering(to_engineering(raw, p), p) == raw


def test_encode_command_writes_json_at_the_value_path_or_plain_text() -> None:
    assert msgspec.json.decode(codec.encode_command(42.5, "json", ValuePath.parse("$.set.v"))) == {"set": {"v": 42.5}}
    assert codec.encode_command(True, "json", None) == b"true"
    assert codec.encode_command(1500, "number", None) == b"1500"
    assert codec.encode_command(False, "number", None) == b"false"


def test_excerpt_is_short_and_printable() -> None:
    text = codec.excerpt(b"\x00\xff" * 100)
    assert len(text) < 300
    assert "(200 bytes)" in text
