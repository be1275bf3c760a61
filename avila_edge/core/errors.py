"""The gateway's exception tree, in one place.

::

    GatewayError
     ├── ConfigError            bad configuration; carries file:line issues
     ├── JournalError           the journal cannot accept or return entries
     │    └── JournalFull       the disk cap is reached and nothing may be dropped
     ├── AuditError             the audit log cannot record, sign, prove or verify
     └── DriverError            a southbound driver failed; names device and operation
          ├── LinkDown          the connection to the device is lost or refused
          ├── Timeout           the device did not answer in time
          ├── ProtocolViolation the device answered with a malformed frame or payload
          └── DeviceRejected    the device answered with an exception / error status

Library errors are translated at each driver's transport with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration: where it is and what is wrong, in plain words."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class ConfigError(GatewayError):
    """The configuration is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class JournalError(GatewayError):
    """The journal cannot accept or return entries."""


class JournalFull(JournalError):
    """The journal reached its disk cap and its policy forbids dropping what is left."""


class AuditError(GatewayError):
    """The Merkle audit log cannot record, sign, prove or verify; the message says where and why."""


class DriverError(GatewayError):
    """A southbound driver failed. The message names the device and the operation."""

    def __init__(self, device: str, operation: str, detail: str) -> None:
        self.device = device
        self.operation = operation
        self.detail = detail
        super().__init__(f"{device}: {operation}: {detail}")

    @property
    def kind(self) -> str:
        """Short error kind used as a metrics label (``link_down``, ``timeout`` ...)."""
        return _KIND_NAMES.get(type(self), "driver_error")


class LinkDown(DriverError):
    """The connection to the device is lost or refused."""


class Timeout(DriverError):
    """The device did not answer within its deadline."""


class ProtocolViolation(DriverError):
    """The device answered with a malformed frame or payload."""


class DeviceRejected(DriverError):
    """The device answered with an exception code or error status."""


_KIND_NAMES: dict[type[DriverError], str] = {
    LinkDown: "link_down",
    Timeout: "timeout",
    ProtocolViolation: "protocol_violation",
    DeviceRejected: "device_rejected",
}
