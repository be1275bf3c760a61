"""The config package exports exactly its public API."""

from __future__ import annotations

import avila_edge.config


def test_public_names_are_the_ones_we_mean_to_export() -> None:
    assert set(avila_edge.config.__all__) == {
        "load_config", "parse_config", "check_config", "load_document",
        "GatewayConfig", "SiteConfig", "DeviceConfig", "PointConfig", "TimingConfig", "AssetConfig",
        "JournalConfig", "HttpConfig", "LoggingConfig",
        "DataType", "LogFormat", "LogLevel", "Synchronous", "Duration", "ByteSize",
    }  # fmt: skip
    for name in avila_edge.config.__all__:
        assert getattr(avila_edge.config, name) is not None
