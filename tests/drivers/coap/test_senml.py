"""SenML (RFC 8428) decoding and resolution: the RFC's own examples, base fields, CBOR labels, and
fuzzing that only ever yields records or a SenmlError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.coap import senml
from drivers.coap.senml import CBOR, JSON, Record, SenmlError

NOW = 1_800_000_000 * 10**9


def resolved(doc: Any, cf: int = JSON) -> list[Record]:
    payload = cbor2.dumps(doc) if cf == CBOR else json.dumps(doc).encode()
    return senml.resolve(senml.decode(payload, cf), NOW)


def test_rfc_8428_example_multiple_datapoints_resolves_base_name_time_and_unit() -> None:
    # RFC 8428 section 5.1.2, shortened
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
        {"u": "lon", "v": 24.30621},
        {"u": "lat", "v": 60.07965},
        {"t": 60, "v": 20.3},
        {"u": "lon", "t": 60, "v": 24.30622},
    ]
    records = resolved(pack)
    assert [r.name for r in records] == ["urn:dev:ow:10e2073a01080063:"] * 5
    assert [r.unit for r in records] == ["%RH", "lon", "lat", "%RH", "lon"]
    assert [r.time_ns for r in records] == [1_320_067_464 * 10**9] * 3 + [1_320_067_524 * 10**9] * 2
    assert records[3].value == 20.3


def test_base_value_and_base_sum_are_added_and_a_sum_alone_is_the_value() -> None:
    records = resolved(
        [{"bn": "m:", "bv": 100, "bs": 1000, "n": "a", "v": 5}, {"n": "b", "s": 7}, {"n": "c", "vs": "x"}]
    )
    assert [(r.name, r.value, r.sum) for r in records] == [
        ("m:a", 105, None),
        ("m:b", 1007.0, 1007.0),
        ("m:c", "x", None),
    ]


def test_times_below_2_pow_28_are_relative_to_now_and_absent_times_are_now() -> None:
    records = resolved([{"n": "a", "v": 1}, {"n": "b", "v": 1, "t": -5}, {"bt": 10, "n": "c", "v": 1, "t": 0.5}])
    assert [r.time_ns for r in records] == [NOW, NOW - 5 * 10**9, NOW + 10_500_000_000]


def test_cbor_labels_map_to_the_json_fields_and_vd_becomes_base64url() -> None:
    pack = [{-2: "d:", -3: 1_700_000_000, 0: "v", 2: 1.5, 1: "Cel"}, {0: "ok", 4: True}, {0: "blob", 8: b"\xfb\xff"}]
    records = resolved(pack, CBOR)
    assert [(r.name, r.value, r.unit) for r in records] == [
        ("d:v", 1.5, "Cel"),
        ("d:ok", True, ""),
        ("d:blob", "-_8", ""),
    ]
    assert records[0].time_ns == 1_700_000_000 * 10**9


def test_a_record_with_only_base_fields_is_skipped() -> None:
    assert [r.name for r in resolved([{"bn": "x:", "bt": 1_700_000_000}, {"n": "a", "v": 1}])] == ["x:a"]


def test_encoding_round_trips_through_json_and_cbor() -> None:
    records = [{"bn": "p:", "n": "flow", "v": 1.25, "u": "m3/h"}, {"n": "on", "vb": False}]
    for cf in (JSON, CBOR):
        decoded = senml.resolve(senml.decode(senml.encode(records, cf), cf), NOW)
        assert [(r.name, r.value, r.unit) for r in decoded] == [("p:flow", 1.25, "m3/h"), ("p:on", False, "")]


@pytest.mark.parametrize(
    ("payload", "cf", "kind"),
    [
        (b"", JSON, "invalid_json"),
        (b"\xc3\x28", JSON, "invalid_utf8"),
        (b"\x9f", CBOR, "invalid_cbor"),
        (b"\x81\x61\xff", CBOR, "invalid_utf8"),
        (bytes.fromhex("81a2006161006162"), CBOR, "invalid_cbor"),  # a map with key 0 twice
        (cbor2.dumps({"n": "a"}), CBOR, "not_senml"),
        (cbor2.dumps([[1]]), CBOR, "not_senml"),
        (cbor2.dumps([{0: "a", 2: float("nan")}]), CBOR, "wrong_type"),
        (cbor2.dumps([{0: "a", 8: "text"}]), CBOR, "wrong_type"),
        (bytes([0x81] * 40) + b"\x01", CBOR, "invalid_cbor"),
        (b'"text"', JSON, "not_senml"),
        (b'[{"n":"a","v":true}]', JSON, "wrong_type"),
        (b'[{"n":"a","vb":1}]', JSON, "wrong_type"),
        (b'[{"n":"a","v":1,"vs":"x"}]', JSON, "wrong_type"),
        (b'[{"n":"a"}]', JSON, "wrong_type"),
        (b'[{"n":"a","bver":"10","v":1}]', JSON, "wrong_type"),
        (b'[{"n":"a","vd":1}]', JSON, "wrong_type"),
        (b'[{"v":1}]', JSON, "bad_name"),
        (b'[{"n":"a b","v":1}]', JSON, "bad_name"),
        (b'[{"n":"a","v":1,"t":1e300}]', JSON, "wrong_type"),
    ],
)
def test_malformed_packs_raise_a_senml_error_of_their_kind(payload: bytes, cf: int, kind: str) -> None:
    with pytest.raises(SenmlError) as caught:
        senml.resolve(senml.decode(payload, cf), NOW)
    assert caught.value.kind == kind


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8), st.binary(max_size=8)
)
_keys = st.one_of(
    st.sampled_from(["n", "bn", "v", "vs", "vb", "vd", "s", "t", "bt", "bv", "u", "bver", "x_"]), st.integers(-8, 9)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_keys, _scalars, max_size=5), max_size=4), st.sampled_from([JSON, CBOR]))
def test_any_structured_pack_yields_records_or_a_senml_error(pack: list[dict[Any, Any]], cf: int) -> None:
    if cf == JSON:
        pack = [{str(k): v for k, v in r.items() if not isinstance(v, bytes)} for r in pack]
        try:
            payload = json.dumps(pack).encode()
        except (ValueError, TypeError):
            return
    else:
        payload = cbor2.dumps(pack)
    try:
        records = senml.resolve(senml.decode(payload, cf), NOW)
    except SenmlError:
        return
    for r in records:
        assert r.name
        assert r.value is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([JSON, CBOR]))
def test_arbitrary_bytes_never_raise_anything_but_a_senml_error(payload: bytes, cf: int) -> None:
    with contextlib.suppress(SenmlError):
        senml.resolve(senml.decode(payload, cf), NOW)
