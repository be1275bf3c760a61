"""NMEA 0183: golden sentences, named fields, every malformation counted under its kind, and a parser
that never raises anything but its own error on arbitrary bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial import nmea
from drivers.serial.nmea import ABSENT, NmeaError, parse_sentence, scan, with_checksum

GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
MWV = b"$WIMWV,214.8,R,0.1,K,A*28"


def test_the_checksum_is_the_xor_of_the_bytes_between_dollar_and_star() -> None:
    assert nmea.checksum(b"GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,") == 0x47
    assert with_checksum("IIMTW,17.0,C") == "$IIMTW,17.0,C*15"
    assert parse_sentence(with_checksum("IIMTW,17.0,C").encode()).fields == ("IIMTW", "17.0", "C")


def test_golden_gga_fields_by_name_with_hemispheres_applied() -> None:
    s = parse_sentence(GGA + b"\r\n")
    assert (s.talker, s.type) == ("GP", "GGA")
    assert nmea.lookup(s, "latitude") == pytest.approx(48.1173)
    assert nmea.lookup(s, "longitude") == pytest.approx(11.516667, abs=1e-6)
    assert nmea.lookup(s, "fix_quality") == 1
    assert nmea.lookup(s, "satellites") == 8
    assert nmea.lookup(s, "altitude") == 545.4
    assert nmea.lookup(s, "time") == 12 * 3600 + 35 * 60 + 19
    assert nmea.lookup(s, 9) == "545.4"  # by index: the raw text
    assert nmea.lookup(s, 40) is ABSENT


def test_south_and_west_are_negative() -> None:
    s = parse_sentence(with_checksum("GNGGA,000000,3352.000,S,15112.000,W,1,08,0.9,10.0,M,0.0,M,,").encode())
    assert nmea.lookup(s, "latitude") == pytest.approx(-33.866667, abs=1e-6)
    assert nmea.lookup(s, "longitude") == pytest.approx(-151.2)


def test_golden_rmc_speed_date_and_magnetic_variation() -> None:
    s = parse_sentence(RMC)
    assert nmea.lookup(s, "valid") is True
    assert nmea.lookup(s, "speed_knots") == 22.4
    assert nmea.lookup(s, "speed_mps") == pytest.approx(22.4 * 1852 / 3600)
    assert nmea.lookup(s, "datetime") == "1994-03-23T12:35:19.000Z"
    assert nmea.lookup(s, "magnetic_variation") == -3.1
    assert nmea.warning(s, "speed_knots") == ""


def test_a_void_rmc_makes_its_values_uncertain_but_not_its_status() -> None:
    s = parse_sentence(with_checksum("GPRMC,123519,V,4807.038,N,01131.000,E,0.0,0.0,230394,,").encode())
    assert nmea.warning(s, "latitude").startswith("RMC status V")
    assert nmea.warning(s, "valid") == ""
    assert nmea.lookup(s, "valid") is False
    assert nmea.lookup(s, "magnetic_variation") is None  # empty: no data


def test_mwv_wind_speed_is_converted_to_metres_per_second() -> None:
    s = parse_sentence(MWV)
    assert nmea.lookup(s, "angle") == 214.8
    assert nmea.lookup(s, "speed_mps") == pytest.approx(0.1 / 3.6)


def test_xdr_measurements_are_found_by_transducer_name() -> None:
    s = parse_sentence(with_checksum("IIXDR,C,19.5,C,AIRTEMP,P,1.013,B,BARO").encode())
    assert nmea.lookup(s, None, "AIRTEMP") == 19.5
    assert nmea.lookup(s, None, "BARO") == 1.013
    assert nmea.lookup(s, None, "HUMIDITY") is ABSENT


def test_mtw_in_another_unit_than_celsius_is_an_invalid_value() -> None:
    s = parse_sentence(with_checksum("IIMTW,63.5,F").encode())
    with pytest.raises(NmeaError) as caught:
        nmea.lookup(s, "temperature")
    assert caught.value.kind == "invalid_value"


def test_proprietary_sentences_have_the_talker_p() -> None:
    s = parse_sentence(with_checksum("PGRME,15.0,M,45.0,M,25.0,M").encode())
    assert (s.talker, s.type) == ("P", "GRME")


@pytest.mark.parametrize(
    ("line", "kinds"),
    [
        (GGA[:-2] + b"00", ["bad_checksum"]),
        (GGA[:-1], ["truncated"]),
        (GGA[:40], ["truncated"]),
        (b"\x00\x13noise", ["garbage"]),
        (b"xx" + GGA, ["garbage"]),
        (GGA[:30] + RMC, ["truncated"]),
        (b"$GPMTW,\xff,C*" + f"{nmea.checksum(b'GPMTW,' + bytes([255]) + b',C'):02X}".encode(), ["invalid_encoding"]),
        (b"$GP,1,2*" + f"{nmea.checksum(b'GP,1,2'):02X}".encode(), ["garbage"]),
        (GGA[:-2] + b"4G", ["bad_checksum"]),
    ],
)
def test_every_malformation_is_reported_under_its_kind(line: bytes, kinds: list[str]) -> None:
    sentence, problems = scan(line)
    assert [p.kind for p in problems] == kinds
    if line.endswith(RMC):
        assert sentence is not None and sentence.type == "RMC"  # what follows the cut is still used
    elif line.startswith(b"xx"):
        assert sentence is not None and sentence.type == "GGA"
    else:
        assert sentence is None


def test_a_sentence_without_checksum_is_accepted_when_checksums_are_optional() -> None:
    sentence, problems = scan(b"$IIMTW,17.0,C", require_checksum=False)
    assert problems == []
    assert sentence is not None and nmea.lookup(sentence, "temperature") == 17.0


def test_invalid_coordinates_are_invalid_values() -> None:
    for body in ("GPGGA,1,4867.000,N,01131.000,E,1", "GPGGA,1,4807.000,X,01131.000,E,1", "GPGGA,1,48a7.0,N,0,E,1"):
        s = parse_sentence(with_checksum(body).encode())
        with pytest.raises(NmeaError) as caught:
            nmea.lookup(s, "latitude")
        assert caught.value.kind == "invalid_value"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_the_parser_raises_only_its_own_error_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(NmeaError):
        parse_sentence(data)
    sentence, problems = scan(data)
    assert all(isinstance(p, NmeaError) for p in problems)
    if sentence is not None:
        _every_field(sentence)


_FIELD_TEXT = st.text(alphabet="0123456789.-+ENSWAVMCKRTe", max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["GGA", "RMC", "GLL", "VTG", "MTW", "MWV", "HDT", "DPT", "XDR"]),
    st.lists(_FIELD_TEXT, max_size=16),
)
def test_named_fields_of_any_checksummed_sentence_raise_only_the_parser_error(kind: str, fields: list[str]) -> None:
    line = with_checksum(",".join([f"GP{kind}", *fields])).encode()
    sentence, problems = scan(line)
    assert problems == []
    assert sentence is not None
    _every_field(sentence)


def _every_field(sentence: nmea.Sentence) -> None:
    kinds: list[str] = []
    names: list[int | str] = [*nmea.FIELDS.get(sentence.type, {}), 1, 5]
    for name in names:
        try:
            nmea.lookup(sentence, name)
        except NmeaError as exc:
            kinds.append(exc.kind)
    try:
        nmea.lookup(sentence, None, "MOTOR")
    except NmeaError as exc:
        kinds.append(exc.kind)
    assert set(kinds) <= {"invalid_value"}
