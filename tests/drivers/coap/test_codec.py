"""Pure payload conversions of the CoAP driver: numbers, JSON value paths, point values, write payloads."""

from __future__ import annotations

import json

import pytest

from avila_edge.config.model import DataType, PointConfig
from drivers.coap import codec, senml
from drivers.coap.codec import PayloadError, ValuePath
from drivers.coap.config import CoapAddress, normal_path, path_segments


@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"21.5", 21.5), (b" -3\n", -3), (b"1e3", 1000.0), (b"ON", True), (b"off", False)],
)
def test_plain_text_numbers_and_words_are_read(payload: bytes, value: object) -> None:
    assert codec.decode_number(payload) == value


@pytest.mark.parametrize(
    ("payload", "kind"), [(b"fast", "invalid_number"), (b"nan", "invalid_number"), (b"\xff", "invalid_utf8")]
)
def test_text_that_is_not_a_number_is_refused_by_kind(payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as caught:
        codec.decode_number(payload)
    assert caught.value.kind == kind


def test_value_paths_read_keys_indexes_and_quoted_keys_and_build_documents() -> None:
    doc = {"a": {"list": [1, {"b c": 7}]}}
    assert ValuePath.parse("$.a.list[1]['b c']").evaluate(doc) == 7
    assert ValuePath.parse("$").evaluate(doc) == doc
    with pytest.raises(PayloadError, match="no key 'x'"):
        ValuePath.parse("$.a.x").evaluate(doc)
    assert ValuePath.parse("$.set.rpm").build(1200) == {"set": {"rpm": 1200}}
    assert not ValuePath.parse("$.a[0]").writable
    with pytest.raises(ValueError, match="must start with"):
        ValuePath.parse("a.b")


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [(1, DataType.BOOL, True), ("on", DataType.BOOL, True), (3.0, DataType.INT16, 3), (7, DataType.FLOAT32, 7.0)],
)
def test_values_are_coerced_to_the_point_type(raw: object, kind: DataType, value: object) -> None:
    assert codec.coerce(raw, kind) == value


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("x", DataType.FLOAT64),
        (True, DataType.INT32),
        (2.5, DataType.INT16),
        (70000, DataType.INT16),
        (1, DataType.STRING),
    ],
)
def test_values_that_do_not_fit_the_point_type_are_wrong_type(raw: object, kind: DataType) -> None:
    with pytest.raises(PayloadError) as caught:
        codec.coerce(raw, kind)
    assert caught.value.kind == "wrong_type"


def test_write_payloads_follow_the_point_format() -> None:
    assert codec.encode_write(1500.0, "number", value_path=None, name=None) == (b"1500.0", codec.TEXT_PLAIN)
    assert codec.encode_write(True, "number", value_path=None, name=None) == (b"true", codec.TEXT_PLAIN)
    payload, cf = codec.encode_write(12, "json", value_path=ValuePath.parse("$.set.rpm"), name=None)
    assert (json.loads(payload), cf) == ({"set": {"rpm": 12}}, codec.APPLICATION_JSON)
    payload, cf = codec.encode_write(False, "senml", value_path=None, name="urn:dev:pump1:run")
    assert (json.loads(payload), cf) == ([{"n": "urn:dev:pump1:run", "vb": False}], senml.JSON)


def test_a_written_engineering_value_is_scaled_back_to_raw() -> None:
    point = PointConfig(id="p/x", address=CoapAddress(path="/x"), type=DataType.INT16, scale=0.1, offset=5.0)
    assert codec.from_engineering(25.0, point) == 200


def test_the_format_follows_from_the_address_keys() -> None:
    assert CoapAddress(path="/a").fmt == "number"
    assert CoapAddress(path="/a", value_path="$.v").fmt == "json"
    assert CoapAddress(path="/a", name="x").fmt == "senml"
    assert CoapAddress(path="/a", name="x", format="json").fmt == "json"


def test_paths_are_normalised() -> None:
    assert path_segments("/a/b/") == ("a", "b")
    assert normal_path("a//b") == "/a/b"
