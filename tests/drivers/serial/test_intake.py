"""From bytes to readings without a port: values, conversions, faults counted and survived, timeouts,
and command rendering."""

from __future__ import annotations

import pytest

from avila_edge.config.model import DataType
from avila_edge.core import Quality
from drivers.serial import codec
from drivers.serial.codec import LineError
from drivers.serial.config import unescape
from drivers.serial.nmea import with_checksum

from .conftest import LINE_PATTERN, LINE_POINTS, NMEA_POINTS, intake, point

NOW = 1_700_000_000_000_000_000


def _nmea(*bodies: str) -> bytes:
    return b"".join(with_checksum(b).encode() + b"\r\n" for b in bodies)


def test_strict_numbers_and_conversion_to_the_point_type() -> None:
    assert codec.coerce("12.5", DataType.FLOAT32) == 12.5
    assert codec.coerce(" -3 ", DataType.INT16) == -3
    assert codec.coerce("on", DataType.BOOL) is True
    assert codec.coerce(7, DataType.FLOAT64) == 7.0
    assert codec.coerce(2.0, DataType.UINT16) == 2
    for text, kind in (("1_000", DataType.FLOAT32), ("nan", DataType.FLOAT64), ("70000", DataType.INT16)):
        with pytest.raises(LineError) as caught:
            codec.coerce(text, kind)
        assert caught.value.kind == "invalid_value"


def test_escapes_are_understood_where_yaml_left_them() -> None:
    assert unescape(r"SET {value:.1f}\r\n") == "SET {value:.1f}\r\n"
    assert unescape(r"\x02R\x03\\") == "\x02R\x03\\"
    assert codec.render_command(r"SET {value:.1f}\r", 1234.56, "ascii") == b"SET 1234.6\r"
    with pytest.raises(LineError):
        codec.render_command("SET {speed}", 1.0, "ascii")


def test_command_values_undo_scale_and_offset() -> None:
    p = point("pump1/sp", "int16", group="x", scale=0.1)
    assert codec.command_value(150.0, p) == 1500
    with pytest.raises(LineError):
        codec.command_value("fast", p)


def test_nmea_values_and_an_uncertain_void_fix() -> None:
    take = intake(NMEA_POINTS, framing="nmea")
    take.restart(0.0)
    out = take.feed(
        _nmea(
            "GPGGA,123519,4807.038,N,01131.000,W,2,08,0.9,545.4,M,46.9,M,,",
            "GPRMC,123519,V,4807.038,N,01131.000,W,5.5,0.0,230394,,",
        ),
        NOW,
        0.1,
    )
    by_point = {r.point: r for r in out}
    assert by_point["gps/lat"].value == pytest.approx(48.1173)
    assert by_point["gps/lon"].value == pytest.approx(-11.516667, abs=1e-6)
    assert by_point["gps/fix"].value == 2
    sog = by_point["gps/sog"]
    assert (sog.value, sog.quality) == (5.5, Quality.UNCERTAIN)
    assert sog.reason.startswith("RMC status V")
    assert all(r.ts_source == NOW == r.ts_gateway for r in out)


def test_talker_filter_and_empty_fields() -> None:
    take = intake(
        [point("a/lat", sentence="GGA", talker="GN", field="latitude"), point("a/alt", sentence="GGA", field=9)],
        framing="nmea",
    )
    take.restart(0.0)
    out = take.feed(_nmea("GPGGA,1,,,,,0,0,,,M,,M,,"), NOW, 0.1)
    assert [r.point for r in out] == ["a/alt"]  # GP is not GN
    assert out[0].quality is Quality.BAD and "empty" in out[0].reason
    out = take.feed(_nmea("GNGGA,1,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), NOW, 0.2)
    assert {r.point: r.value for r in out} == {"a/lat": pytest.approx(48.1173), "a/alt": 545.4}


def test_a_fault_corpus_is_counted_and_the_good_frames_around_it_still_arrive() -> None:
    take = intake(LINE_POINTS, pattern=LINE_PATTERN)
    take.restart(0.0)
    good = b"PUMP,120.50,4.200,45.00,1.200,1500.0,1500.0,1\r\n"
    corpus = [
        b"\x00\x13~~noise\r\n",  # matches no point
        b"PUMP,120.1\r\n",  # truncated
        b"PUMP," + b"9" * 600 + b"\r\n",  # over-long
        b"PUMP,\xff\xfe12.5,1,1,1,1,1,1\r\n",  # invalid UTF-8 / ASCII
        b"PUMP,abc,4.2,45.0,1.2,1500.0,1500.0,1\r\n",  # non-numeric flow
    ]
    out = take.feed(good + b"".join(corpus) + good, NOW, 0.1)
    errors = take.health.snapshot().errors
    assert errors == {"unmatched": 1, "truncated": 1, "oversize": 1, "invalid_encoding": 1, "invalid_value": 1}
    flow = [r for r in out if r.point == "pump1/flow"]
    assert [r.quality for r in flow] == [Quality.GOOD, Quality.BAD, Quality.GOOD]
    assert [r.value for r in flow] == [120.5, 120.5, 120.5]  # the Bad one keeps the last good value
    assert "not a number" in flow[1].reason
    assert len([r for r in out if r.point == "pump1/pressure" and r.good]) == 3  # the non-numeric line's pressure


def test_regex_framing_takes_named_groups_of_the_frame() -> None:
    take = intake(
        [point("t/temp", group="t"), point("t/hum", group="h")],
        framing="regex",
        frame=r"<T(?P<t>[-0-9.]+)H(?P<h>[0-9.]+)>",
    )
    take.restart(0.0)
    out = take.feed(b"<T21.5H40.0><T-1", NOW, 0.1) + take.feed(b".5H41.5>", NOW, 0.2)
    assert [(r.point, r.value) for r in out] == [("t/temp", 21.5), ("t/hum", 40.0), ("t/temp", -1.5), ("t/hum", 41.5)]


def test_points_without_news_go_bad_with_a_timeout_reason_once() -> None:
    take = intake([point("a/x", group="x"), point("a/y", group="y")], pattern=r"X=(?P<x>\S+)|Y=(?P<y>\S+)")
    take.restart(0.0)
    take.feed(b"X=1\r\nY=2\r\n", NOW, 0.1)
    assert take.stale(NOW, 0.5, silent_for=0.4) == []
    take.feed(b"X=3\r\n", NOW, 0.6)
    stale = take.stale(NOW, 0.8, silent_for=0.2)
    assert [(r.point, r.quality, r.value) for r in stale] == [("a/y", Quality.BAD, 2.0)]
    assert stale[0].reason == "timeout: no value received for 0.6 s"
    assert take.stale(NOW, 0.9, silent_for=0.3) == []  # reported once
    silent = take.stale(NOW, 1.3, silent_for=0.7)
    assert [(r.point, r.reason) for r in silent] == [("a/x", "timeout: the line has been silent for 0.6 s")]
