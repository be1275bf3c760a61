"""Values of the OPC UA server: twin values as DataValues (status from quality, timestamps), and the
values clients write as values of a point."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Final

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from avila_edge.config.model import DataType, PointConfig
from avila_edge.core import Quality
from avila_edge.north import naming

_INTEGER_TYPES: Final = frozenset(
    {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64}
)
STATUS_NAMES: Final = {k: v for k, v in vars(StatusCodes).items() if isinstance(v, int) and k[:1].isupper()}
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def node_id(text: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(ns))


def status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def variant_type(kind: DataType) -> ua.VariantType:
    if kind is DataType.BOOL:
        return ua.VariantType.Boolean
    if kind is DataType.STRING:
        return ua.VariantType.String
    return ua.VariantType.Double


def convert(value: object, kind: ua.VariantType) -> object:
    """The value as the variable's type, or None when it does not fit."""
    if value is None:
        return None
    if kind is ua.VariantType.Double:
        return float(value) if isinstance(value, int | float) else None
    if kind is ua.VariantType.Boolean:
        return value if isinstance(value, bool) else (bool(value) if isinstance(value, int | float) else None)
    return str(value)


def desired_value(raw: object, point: PointConfig) -> bool | int | float | str | None:
    if point.type is DataType.BOOL:
        return raw if isinstance(raw, bool) else None
    if point.type is DataType.STRING:
        return raw if isinstance(raw, str) else None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    if point.type in _INTEGER_TYPES and point.scale == 1 and point.offset == 0 and float(raw).is_integer():
        return int(raw)
    return float(raw)


def data_value(
    value: object,
    quality: Quality,
    reason: str,
    ts_source: int,
    ts_gateway: int,
    names: Mapping[str, int],
    *,
    kind: ua.VariantType | None = None,
) -> ua.DataValue:
    code = naming.status_code(quality, reason, names)
    variant = ua.Variant(value, kind) if kind is not None and value is not None else ua.Variant(value)
    return ua.DataValue(
        Value=variant,
        StatusCode=status(code),
        SourceTimestamp=to_datetime(ts_source),  # type: ignore[arg-type]
        ServerTimestamp=to_datetime(ts_gateway),  # type: ignore[arg-type]
    )


def to_datetime(ns: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


def to_ns(when: dt.datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when <= EPOCH:
        return None
    delta = when - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
