"""A point's scale and offset, shared by every driver: engineering = raw * scale + offset."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from avila_edge.config.model import PointConfig
from avila_edge.core import Value

T = TypeVar("T")


def to_engineering(raw: Value, point: PointConfig) -> Value:
    """Apply the point's scale and offset; integers stay integers when both are neutral."""
    if isinstance(raw, bool | str):
        return raw
    if point.scale == 1.0 and point.offset == 0.0:
        return raw
    return raw * point.scale + point.offset


def scaled(read: Callable[[T], Value], point: PointConfig) -> Callable[[T], Value]:
    """``read`` followed by the point's scale and offset, for a decoder built once per point: ``read``
    itself when both are neutral, so the common point pays no call for them."""
    if point.scale == 1.0 and point.offset == 0.0:
        return read
    return lambda raw: to_engineering(read(raw), point)


def to_raw(value: float, point: PointConfig) -> float:
    """The raw number for an engineering ``value``; ``ValueError`` when the point cannot be inverted."""
    if point.scale == 1.0 and point.offset == 0.0:
        return value
    if point.scale == 0:
        raise ValueError("a point with scale 0 cannot be written")
    return (value - point.offset) / point.scale
