"""Typed configuration: the model, and the YAML loader that reports file:line errors."""

from avila_edge.config._loader import check_config, load_config, load_document, parse_config
from avila_edge.config.model import (
    AssetConfig,
    DataType,
    DeviceConfig,
    GatewayConfig,
    HttpConfig,
    JournalConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    PointConfig,
    SiteConfig,
    Synchronous,
    TimingConfig,
)
from avila_edge.config.units import ByteSize, Duration

__all__ = [
    "AssetConfig",
    "ByteSize",
    "DataType",
    "DeviceConfig",
    "Duration",
    "GatewayConfig",
    "HttpConfig",
    "JournalConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "PointConfig",
    "SiteConfig",
    "Synchronous",
    "TimingConfig",
    "check_config",
    "load_config",
    "load_document",
    "parse_config",
]
