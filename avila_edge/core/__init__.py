"""Core value types of avila-edge: Reading, quality, errors, clock. Imports nothing of ours."""

from avila_edge.core.backoff import Backoff
from avila_edge.core.cancel import check_cancelled
from avila_edge.core.clock import Clock, ManualClock, SystemClock
from avila_edge.core.errors import (
    AuditError,
    ConfigError,
    ConfigIssue,
    DeviceRejected,
    DriverError,
    GatewayError,
    JournalError,
    JournalFull,
    LinkDown,
    ProtocolViolation,
    Timeout,
)
from avila_edge.core.event import AttrValue, Event
from avila_edge.core.reading import Quality, Reading, Value, bad, split_point_id

__all__ = [
    "AttrValue",
    "AuditError",
    "Backoff",
    "Clock",
    "ConfigError",
    "ConfigIssue",
    "DeviceRejected",
    "DriverError",
    "Event",
    "GatewayError",
    "JournalError",
    "JournalFull",
    "LinkDown",
    "ManualClock",
    "ProtocolViolation",
    "Quality",
    "Reading",
    "SystemClock",
    "Timeout",
    "Value",
    "bad",
    "check_cancelled",
    "split_point_id",
]
