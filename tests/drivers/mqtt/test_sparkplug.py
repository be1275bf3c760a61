"""The hand-written Sparkplug B wire codec against golden frames made with the protobuf library
(``protoc`` on ``drivers/mqtt/sparkplug_b.proto``, protobuf 7 upb), plus fuzzing."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.mqtt import sparkplug
from drivers.mqtt.sparkplug import DataType, SparkplugError
from hil import mqtt_sensors

# Payload(timestamp=1700000000123, seq=7) with metrics: bdSeq UInt64 3; Temp Float 21.5 (alias 1, ts);
# Neg8 Int8 -5 as 32-bit two's complement; Neg8b Int8 -5 as 8-bit; Neg64 Int64 -7; D Double -1.25;
# B Boolean true; S String "héllo"; N Float null; U32 UInt32 4000000000; DS a DataSet; P Int32 9 with
# a PropertySet.
GOLDEN_BIRTH = bytes.fromhex(
    "08fbd095ffbc31120b0a0562645365712008580312160a0454656d70100118e4d095ffbc312009650000ac4112100a044e"
    "6567381002200150fbffffff0f120e0a054e656738621003200150fb0112160a054e656736341004200458f9ffffffffff"
    "ffffff0112100a01441005200a69000000000000f4bf12090a01421006200b7001120f0a01531007200c7a0668c3a96c6c"
    "6f12090a014e100820093801120f0a03553332100920075080d0acf30e120e0a02445320108a0105080112016312130a01"
    "5020034a0a0a016b1205080c42017850091807"
)
# Payload(timestamp=1700000000000) with Node Control/Rebirth Boolean true (ts 1700000000000).
GOLDEN_REBIRTH = bytes.fromhex("0880d095ffbc3112210a144e6f646520436f6e74726f6c2f526562697274681880d095ffbc31200b7001")
# Payload(timestamp=5, seq=255): a Int16 -300 (alias 1, ts 9), b Float 1.5, c Int64 -1, d String "x",
# e Boolean false, f Double null, g DateTime 1700000000000, h Bytes 00 01.
GOLDEN_MIXED = bytes.fromhex(
    "0805120f0a016110011809200250d4fdffff0f120a0a01622009650000c03f12100a0163200458ffffffffffffffffff01"
    "12080a0164200c7a017812070a0165200b700012070a0166200a3801120c0a0167200d5880d095ffbc31120a0a01682011"
    "820102000118ff01"
)


def test_decode_reads_every_scalar_kind_of_a_golden_payload() -> None:
    p = sparkplug.decode_payload(GOLDEN_BIRTH)
    assert p.timestamp == 1_700_000_000_123
    assert p.seq == 7
    values = {m.name: m.value() for m in p.metrics if m.name != "DS"}
    assert values == {
        "bdSeq": 3,
        "Temp": 21.5,
        "Neg8": -5,
        "Neg8b": -5,
        "Neg64": -7,
        "D": -1.25,
        "B": True,
        "S": "héllo",
        "N": None,
        "U32": 4_000_000_000,
        "P": 9,
    }
    temp = p.metric("Temp")
    assert temp is not None
    assert (temp.alias, temp.timestamp, temp.datatype) == (1, 1_700_000_000_100, DataType.FLOAT)


def test_a_dataset_metric_is_skipped_as_unmapped_not_misread() -> None:
    ds = sparkplug.decode_payload(GOLDEN_BIRTH).metric("DS")
    assert ds is not None
    with pytest.raises(SparkplugError, match="dataset"):
        ds.value()


def test_rebirth_request_is_byte_identical_to_the_protobuf_library() -> None:
    assert sparkplug.rebirth_request(1_700_000_000_000) == GOLDEN_REBIRTH


def test_encode_is_byte_identical_to_the_protobuf_library() -> None:
    metrics = [
        sparkplug.encode_metric(name="a", alias=1, timestamp=9, datatype=DataType.INT16, value=-300),
        sparkplug.encode_metric(name="b", datatype=DataType.FLOAT, value=1.5),
        sparkplug.encode_metric(name="c", datatype=DataType.INT64, value=-1),
        sparkplug.encode_metric(name="d", datatype=DataType.STRING, value="x"),
        sparkplug.encode_metric(name="e", datatype=DataType.BOOLEAN, value=False),
        sparkplug.encode_metric(name="f", datatype=DataType.DOUBLE, value=None),
        sparkplug.encode_metric(name="g", datatype=DataType.DATETIME, value=1_700_000_000_000),
        sparkplug.encode_metric(name="h", datatype=DataType.BYTES, value=b"\x00\x01"),
    ]
    assert sparkplug.encode_payload(timestamp=5, metrics=metrics, seq=255) == GOLDEN_MIXED


def test_decoding_the_mixed_golden_gives_back_the_encoded_values() -> None:
    p = sparkplug.decode_payload(GOLDEN_MIXED)
    assert [m.value() for m in p.metrics] == [-300, 1.5, -1, "x", False, None, 1_700_000_000_000, b"\x00\x01"]
    assert p.seq == 255


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("spBv1.0/plant/NBIRTH/edge1", sparkplug.Topic("plant", "NBIRTH", "edge1")),
        ("spBv1.0/plant/DDATA/edge1/pump1", sparkplug.Topic("plant", "DDATA", "edge1", "pump1")),
        ("spBv1.0/STATE/host1", None),
        ("spBv1.0/plant/DDATA/edge1", None),
        ("spBv1.0/plant/NDATA/edge1/pump1", None),
        ("spBv1.0/plant/XDATA/edge1", None),
        ("spAv1.0/plant/NDATA/edge1", None),
        ("spBv1.0//NDATA/edge1", None),
    ],
)
def test_parse_topic_reads_sparkplug_topics_only(topic: str, expected: sparkplug.Topic | None) -> None:
    assert sparkplug.parse_topic(topic) == expected
    if expected is not None:
        assert str(expected) == topic


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x08", "truncated"),  # timestamp key without its number
        (b"\x12\x05\x0a\x01", "truncated"),  # metric claims 5 bytes, 2 follow
        (b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "invalid_protobuf"),  # 11-byte varint
        (b"\x0b", "invalid_protobuf"),  # wire type 3 (group)
        (b"\x00\x01", "invalid_protobuf"),  # field number 0
        (b"\x0a\x01x", "invalid_protobuf"),  # timestamp as bytes
        (b"\x12\x03\x0a\x01\xff", "invalid_protobuf"),  # metric name not UTF-8
        (b"\x12\x02\x65\x01", "truncated"),  # float value with 1 of 4 bytes
        (b'{"v": 1}', "invalid_protobuf"),  # JSON is not a Sparkplug payload
    ],
)
def test_malformed_payloads_raise_a_counted_kind(data: bytes, kind: str) -> None:
    with pytest.raises(SparkplugError) as info:
        sparkplug.decode_payload(data)
    assert info.value.kind == kind


def test_every_truncation_of_a_golden_payload_decodes_or_raises_a_sparkplug_error() -> None:
    kinds: set[str] = set()
    for end in range(len(GOLDEN_BIRTH)):
        try:
            sparkplug.decode_payload(GOLDEN_BIRTH[:end])
        except SparkplugError as exc:
            kinds.add(exc.kind)
    assert kinds == {"truncated"}


@given(st.binary(max_size=300))
def test_decoding_any_bytes_raises_only_sparkplug_errors(data: bytes) -> None:
    try:
        p = sparkplug.decode_payload(data)
    except SparkplugError:
        return
    for m in p.metrics:
        with contextlib.suppress(SparkplugError):
            m.value()


scalar = st.one_of(
    st.tuples(st.just(DataType.INT8), st.integers(-128, 127)),
    st.tuples(st.just(DataType.INT16), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just(DataType.INT32), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(DataType.INT64), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(DataType.UINT8), st.integers(0, 255)),
    st.tuples(st.just(DataType.UINT32), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(DataType.UINT64), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(DataType.DOUBLE), st.floats(allow_nan=False)),
    st.tuples(st.just(DataType.BOOLEAN), st.booleans()),
    st.tuples(st.just(DataType.STRING), st.text()),
)


@given(st.lists(st.tuples(st.text(max_size=20), st.integers(0, 2**64 - 1), scalar), max_size=8), st.integers(0, 255))
def test_encode_then_decode_gives_back_names_aliases_and_values(
    metrics: list[tuple[str, int, tuple[DataType, object]]], seq: int
) -> None:
    encoded = [
        sparkplug.encode_metric(name=n, alias=a, datatype=dt, value=v)  # type: ignore[arg-type]
        for n, a, (dt, v) in metrics
    ]
    p = sparkplug.decode_payload(sparkplug.encode_payload(timestamp=1, metrics=encoded, seq=seq))
    assert p.seq == seq
    assert [(m.name, m.alias, m.value()) for m in p.metrics] == [(n, a, v) for n, a, (_, v) in metrics]


@given(st.floats(width=32, allow_nan=False))
def test_float_metrics_keep_their_32_bit_value(value: float) -> None:
    m = sparkplug.encode_metric(name="f", datatype=DataType.FLOAT, value=value)
    decoded = sparkplug.decode_payload(sparkplug.encode_payload(timestamp=None, metrics=[m])).metrics[0].value()
    assert decoded == value or (math.isinf(value) and decoded == value)


def test_the_simulators_independent_writer_is_read_back_exactly() -> None:
    metrics = [
        mqtt_sensors.metric_bytes(name="flow", alias=4, datatype=mqtt_sensors.DOUBLE, value=12.5, timestamp=77),
        mqtt_sensors.metric_bytes(name="running", datatype=mqtt_sensors.BOOLEAN, value=True),
        mqtt_sensors.metric_bytes(name="bdSeq", datatype=mqtt_sensors.UINT64, value=2),
        mqtt_sensors.metric_bytes(name="label", datatype=mqtt_sensors.STRING, value="P-1"),
        mqtt_sensors.metric_bytes(name="gone", datatype=mqtt_sensors.DOUBLE, value=None),
    ]
    p = sparkplug.decode_payload(mqtt_sensors.payload_bytes(metrics, seq=9, timestamp=1234))
    assert (p.timestamp, p.seq) == (1234, 9)
    assert [(m.name, m.alias, m.timestamp, m.value()) for m in p.metrics] == [
        ("flow", 4, 77, 12.5),
        ("running", None, None, True),
        ("bdSeq", None, None, 2),
        ("label", None, None, "P-1"),
        ("gone", None, None, None),
    ]


def test_the_simulator_reads_commands_written_by_the_driver_codec() -> None:
    metric = sparkplug.encode_metric(name="speed_setpoint", datatype=DataType.DOUBLE, value=1200.0)
    payload = sparkplug.encode_payload(timestamp=1, metrics=[metric])
    assert mqtt_sensors.command_metrics(payload) == {"speed_setpoint": 1200.0}
    assert mqtt_sensors.command_metrics(sparkplug.rebirth_request(1)) == {"Node Control/Rebirth": True}
