"""Structured logs (JSON or logfmt) for every logger, ours and the libraries', through one root handler."""

from __future__ import annotations

import logging
import sys

import structlog

from avila_edge.config.model import LogFormat, LoggingConfig

QUIET_LIBRARIES = ("pymodbus", "asyncua", "aiohttp.access", "paho", "aiocoap")


def configure_logging(config: LoggingConfig, *, stream: object = None) -> None:
    """Route all logging through structlog's formatter. Call once, from the CLI."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if config.format is LogFormat.JSON
        else structlog.processors.LogfmtRenderer(key_order=["ts", "level", "logger", "event"], drop_missing=True)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level.value.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
