"""SenML (RFC 8428) packs in JSON and CBOR: decoding, resolving and encoding. Pure code, no I/O.

Resolution follows RFC 8428 section 4.6: the base fields (``bn``, ``bt``, ``bu``, ``bv``, ``bs``,
``bver``) apply to their record and every later one until changed; the resolved name is ``bn + n``,
the time ``bt + t`` (below 2**28 it is relative to now, so ``0`` or no time means "now"), the
value ``bv + v`` for numbers and the sum ``bs + s``. A record carries one of ``v``/``vs``/``vb``/
``vd``; a record with only a sum takes the sum as its value; a record with no value, no sum and no
``n`` only sets base fields. Fields ending in ``_`` must be understood: a pack using any is refused.

Every problem raises ``SenmlError`` with a ``kind`` (the health counter label): ``invalid_json``,
``invalid_cbor``, ``invalid_utf8``, ``not_senml``, ``wrong_type``, ``bad_name``,
``unsupported_version``.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2
import msgspec

from avila_edge.driver.payload import PayloadError, decode_json, shown

JSON: Final = 110
"""CoAP content-format of application/senml+json."""
CBOR: Final = 112
"""CoAP content-format of application/senml+cbor."""

VERSION: Final = 10
RELATIVE_LIMIT: Final = 2**28
"""Resolved times below this many seconds are relative to now (RFC 8428 section 4.5.3)."""

_CBOR_LABELS: Final[dict[int, str]] = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
}
_LABEL_OF: Final = {name: label for label, name in _CBOR_LABELS.items()}
_TEXT: Final = ("bn", "bu", "n", "u", "vs")
_NUMBERS: Final = ("bt", "bv", "bs", "v", "s", "t", "ut")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*\Z")
_MAX_DEPTH: Final = 8
_MAX_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z


class SenmlError(PayloadError):
    """A pack cannot be decoded or resolved; ``kind`` labels the health counter."""


@dataclass(frozen=True, slots=True)
class Record:
    """One resolved record: absolute time in ns, a value (None only when the record has just a sum)."""

    name: str
    value: bool | int | float | str | None
    time_ns: int
    unit: str = ""
    sum: float | None = None


# -- decoding ------------------------------------------------------------------------------------


def decode(payload: bytes, content_format: int) -> list[dict[str, Any]]:
    """The raw records of a pack (field names as in JSON), checked for shape and field types."""
    if content_format == CBOR:
        doc = _decode_cbor(payload)
        if not isinstance(doc, list):
            raise SenmlError("not_senml", f"a SenML pack is a CBOR array of maps, got {shown(doc)}")
        records = [_cbor_record(i, r) for i, r in enumerate(doc)]
    else:
        doc = _decode_json(payload)
        if not isinstance(doc, list):
            raise SenmlError("not_senml", f"a SenML pack is a JSON array of objects, got {shown(doc)}")
        records = []
        for i, r in enumerate(doc):
            if not isinstance(r, dict):
                raise SenmlError("not_senml", f"record {i} is {shown(r)}, not an object")
            records.append(r)
    for i, record in enumerate(records):
        _check_fields(i, record, content_format == CBOR)
    return records


def _decode_json(payload: bytes) -> Any:
    try:
        return decode_json(payload)
    except PayloadError as exc:
        raise SenmlError(exc.kind, str(exc)) from None


def _decode_cbor(payload: bytes) -> Any:
    fp = io.BytesIO(payload)
    try:
        doc = cbor2.CBORDecoder(fp, read_size=1, max_depth=_MAX_DEPTH, allow_duplicate_keys=False).decode()
    except UnicodeDecodeError as exc:
        raise SenmlError("invalid_utf8", f"CBOR text string is not UTF-8 ({exc.reason})") from None
    except Exception as exc:  # any decoder failure is a malformed pack
        reason = str(exc) or type(exc).__name__
        if isinstance(exc.__cause__, UnicodeDecodeError):
            raise SenmlError("invalid_utf8", f"CBOR text string is not UTF-8 ({reason})") from None
        raise SenmlError("invalid_cbor", f"not CBOR: {reason}") from None
    if fp.tell() != len(payload):
        raise SenmlError("invalid_cbor", f"{len(payload) - fp.tell()} byte(s) after the CBOR item")
    return doc


def _cbor_record(i: int, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SenmlError("not_senml", f"record {i} is {shown(raw)}, not a map")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise SenmlError("not_senml", f"record {i} has a key {shown(key)}; SenML keys are labels or text")
        name = _CBOR_LABELS.get(key, f"#{key}") if isinstance(key, int) else key
        out[name] = value
    return out


def _check_fields(i: int, record: Mapping[str, Any], cbor: bool) -> None:
    for key, value in record.items():
        where = f"record {i} field {key!r}"
        if key.endswith("_"):
            raise SenmlError("not_senml", f"{where} must be understood and is not supported")
        if key in _TEXT:
            if not isinstance(value, str):
                raise SenmlError("wrong_type", f"{where} must be text, got {shown(value)}")
        elif key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SenmlError("wrong_type", f"{where} must be a number, got {shown(value)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise SenmlError("wrong_type", f"{where} must be finite, got {value!r}")
        elif key == "vb":
            if not isinstance(value, bool):
                raise SenmlError("wrong_type", f"{where} must be true or false, got {shown(value)}")
        elif key == "vd":
            if not isinstance(value, bytes if cbor else str):
                kind = "a byte string" if cbor else "base64url text"
                raise SenmlError("wrong_type", f"{where} must be {kind}, got {shown(value)}")
        elif key == "bver" and (isinstance(value, bool) or not isinstance(value, int)):
            raise SenmlError("wrong_type", f"{where} must be an integer, got {shown(value)}")
    values = [k for k in ("v", "vs", "vb", "vd") if k in record]
    if len(values) > 1:
        raise SenmlError("wrong_type", f"record {i} has more than one value ({', '.join(values)})")


# -- resolving -----------------------------------------------------------------------------------


def resolve(records: Sequence[Mapping[str, Any]], now_ns: int) -> list[Record]:
    """The resolved records of a decoded pack (RFC 8428 section 4.6), in order."""
    bn, bu = "", ""
    bt, bv, bs = 0.0, 0.0, 0.0
    out: list[Record] = []
    for i, r in enumerate(records):
        if "bver" in r and r["bver"] > VERSION:
            raise SenmlError(
                "unsupported_version", f"record {i}: SenML version {r['bver']} (this gateway reads {VERSION})"
            )
        bn = r.get("bn", bn)
        bu = r.get("bu", bu)
        bt = r.get("bt", bt)
        bv = r.get("bv", bv)
        bs = r.get("bs", bs)
        has_value = any(k in r for k in ("v", "vs", "vb", "vd"))
        if not has_value and "s" not in r:
            if "n" in r:
                raise SenmlError("wrong_type", f"record {i} ({bn + r['n']!r}) has no value and no sum")
            continue  # base fields only
        name = bn + r.get("n", "")
        if not _NAME.match(name):
            raise SenmlError(
                "bad_name",
                f"record {i}: {name!r} is not a SenML name (letters, digits and -:./_, not starting with -:./_)",
            )
        value: bool | int | float | str | None
        if "v" in r:
            value = bv + r["v"] if bv else r["v"]
        elif "vs" in r:
            value = r["vs"]
        elif "vb" in r:
            value = r["vb"]
        elif "vd" in r:
            vd = r["vd"]
            value = base64.urlsafe_b64encode(vd).rstrip(b"=").decode() if isinstance(vd, bytes) else vd
        else:
            value = None
        total = float(bs + r["s"]) if "s" in r else None
        if value is None:
            value = total
        out.append(
            Record(
                name=name, value=value, time_ns=_time_ns(bt + r.get("t", 0), now_ns, i), unit=r.get("u", bu), sum=total
            )
        )
    return out


def _time_ns(seconds: float, now_ns: int, i: int) -> int:
    if not math.isfinite(seconds) or abs(seconds) > _MAX_SECONDS:
        raise SenmlError("wrong_type", f"record {i}: time {seconds!r} is outside 1970..9999")
    ns = round(seconds * 1e9)
    if seconds < RELATIVE_LIMIT:
        ns += now_ns
    if not 0 <= ns <= _MAX_SECONDS * 10**9:
        raise SenmlError("wrong_type", f"record {i}: time {seconds!r} is outside 1970..9999")
    return ns


# -- encoding ------------------------------------------------------------------------------------


def encode(records: Sequence[Mapping[str, Any]], content_format: int = JSON) -> bytes:
    """A pack of ``records`` (JSON field names) as SenML JSON or CBOR."""
    if content_format == CBOR:
        return cbor2.dumps([{_LABEL_OF.get(k, k): v for k, v in r.items()} for r in records])
    return msgspec.json.encode(list(records))
