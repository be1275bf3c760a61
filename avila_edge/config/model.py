"""Typed, frozen configuration of one gateway. Produced only by ``avila_edge.config.load``.

Durations are float seconds and sizes int bytes here; the YAML may write them as ``500ms``, ``2s``,
``5m``, ``1h``, ``7d`` and ``512KiB``, ``64MB``, ``1GiB`` (the loader converts). Driver-specific
parts (``DeviceConfig.connection``, ``PointConfig.address``) are the frozen structs declared by the
driver's plugin (``drivers/<name>/config.py``), already validated.

The structs a site has one of per point, device or asset (``PointConfig``, ``DeviceConfig``,
``AssetConfig`` and their ``TimingConfig``, ``SiteConfig``) are ``gc=False``: the garbage collector
does not track them, which saves 16 bytes each (a 100,000-point site holds 100,000 of them). That is
safe because they cannot take part in a reference cycle: they are frozen, built once by the loader
from fresh values (strings, numbers, tuples of other frozen config structs) and never refer back to
anything that holds them. A driver's ``connection`` and ``address`` structs follow the same rule.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import msgspec

from avila_edge.config.anomaly import AnomalyConfig
from avila_edge.config.north import NorthConfig
from avila_edge.config.sync import InfluxSinkConfig, MqttUplinkConfig
from avila_edge.config.twins import AssetTypeConfig
from avila_edge.config.units import ByteSize, Duration


class DataType(enum.StrEnum):
    """How a point's raw value is interpreted."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class LogFormat(enum.StrEnum):
    JSON = "json"
    LOGFMT = "logfmt"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Synchronous(enum.StrEnum):
    """SQLite durability: ``normal`` may lose the last commits on power loss (never corrupts),
    ``full`` fsyncs every commit."""

    NORMAL = "normal"
    FULL = "full"


class SiteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    id: str
    name: str = ""


class TimingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """How a device is polled and retried."""

    poll_interval: Duration = 1.0
    timeout: Duration = 1.0
    retries: int = 0
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 30.0


class PointConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One point of one device. ``id`` is ``asset/point``. The published value is
    ``raw * scale + offset`` for numeric types."""

    id: str
    address: Any
    type: DataType = DataType.FLOAT32
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    description: str = ""
    poll_interval: Duration | None = None
    deadband: float = 0.0
    writable: bool = False


class DeviceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    id: str
    driver: str
    connection: Any
    points: tuple[PointConfig, ...]
    timing: TimingConfig = TimingConfig()
    enabled: bool = True
    description: str = ""

    def poll_interval_of(self, point: PointConfig) -> float:
        return point.poll_interval if point.poll_interval is not None else self.timing.poll_interval


class AssetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A twin: the points whose id starts with ``<id>/`` belong to it."""

    id: str
    name: str = ""
    type: str = ""
    parent: str | None = None
    description: str = ""


class JournalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``commit_interval`` 0 commits as soon as the writer is free (appends that arrive during a commit
    share the next one); a positive value waits that long to gather more per commit (slow SD cards)."""

    max_bytes: ByteSize = 1 << 30
    max_age: Duration | None = None
    commit_interval: Duration = 0.0
    batch_max: int = 10_000
    synchronous: Synchronous = Synchronous.FULL


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The local web server (REST API and console); see ``docs/api.md``.

    ``tls``: ``auto`` serves plain HTTP on a loopback address and HTTPS with a self-signed certificate
    (made at first start, kept in the state directory) on any other; ``self-signed`` uses that
    certificate everywhere; ``files`` serves ``cert_file``/``key_file`` (PEM, read at start; relative
    paths resolve against ``state_dir``); ``off`` never encrypts. ``names`` are extra DNS names or IP
    addresses for the self-signed certificate (the host name and ``host`` are always in it).
    ``session_idle``: a console login ends after this long without a request."""

    host: str = "127.0.0.1"
    port: int = 8080
    tls: Literal["auto", "off", "self-signed", "files"] | bool = "auto"
    """YAML reads ``off``/``on`` as booleans: ``off`` means off, ``on`` self-signed (``files`` with cert_file)."""
    cert_file: Path | None = None
    key_file: Path | None = None
    names: tuple[str, ...] = ()
    session_idle: Duration = 12 * 3600.0

    def __post_init__(self) -> None:
        if isinstance(self.tls, bool):
            mode = "off" if not self.tls else "files" if self.cert_file is not None else "self-signed"
            msgspec.structs.force_setattr(self, "tls", mode)
        if self.tls == "files" and (self.cert_file is None or self.key_file is None):
            raise ValueError("tls: files needs both cert_file and key_file")
        if self.tls != "files" and (self.cert_file is not None or self.key_file is not None):
            raise ValueError("cert_file and key_file are only read with tls: files")
        if self.session_idle <= 0:
            raise ValueError("session_idle must be positive")


class LoggingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: LogFormat = LogFormat.LOGFMT
    level: LogLevel = LogLevel.INFO


class AuditConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The Merkle audit log: a signed checkpoint every ``checkpoint_interval`` seconds or every
    ``checkpoint_entries`` new entries, whichever comes first. ``origin`` names the log in its
    checkpoints and its key (a schema-less URL-like name without spaces or ``+``); the default is
    ``avila-edge/<site.id>``."""

    checkpoint_interval: Duration = 60.0
    checkpoint_entries: int = 10_000
    origin: str | None = None
    keep_retired_hashes: bool = False
    """Keep the leaf hashes of entries retention removed, so the gateway can still prove them
    (~36 bytes per entry, counted in ``journal.max_bytes``). Off: they are compacted away and storage
    stays bounded; the fleet proves those entries (it verified them against the same checkpoints)."""


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The whole configuration of one gateway."""

    site: SiteConfig
    devices: tuple[DeviceConfig, ...] = ()
    assets: tuple[AssetConfig, ...] = ()
    asset_types: tuple[AssetTypeConfig, ...] = ()
    uplinks: tuple[MqttUplinkConfig, ...] = ()
    sinks: tuple[InfluxSinkConfig, ...] = ()
    state_dir: Path = Path("/var/lib/avila-edge")
    journal: JournalConfig = JournalConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    audit: AuditConfig = AuditConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    north: NorthConfig = NorthConfig()

    def points(self) -> dict[str, tuple[DeviceConfig, PointConfig]]:
        """Every configured point by id, with its device."""
        return {p.id: (d, p) for d in self.devices for p in d.points}
