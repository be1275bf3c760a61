"""Typed configuration: the model, and the YAML loader that reports file:line errors."""

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

__all__ = [
    "AssetConfig",
    "DataType",
    "DeviceConfig",
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
]
