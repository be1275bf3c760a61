"""Logs are structured (JSON or logfmt as configured), for our loggers and the libraries' alike."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from avila_edge.config.model import LogFormat, LoggingConfig, LogLevel
from avila_edge.observability.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_level_logger_time_and_message() -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(format=LogFormat.JSON, level=LogLevel.INFO), stream=out)
    logging.getLogger("avila_edge.test").warning("device %s lost", "plc1")
    logging.getLogger("pymodbus.client").info("chatty library detail")
    logging.getLogger("pymodbus.client").error("library failure")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["level"], r["logger"], r["event"]) for r in lines] == [
        ("warning", "avila_edge.test", "device plc1 lost"),
        ("error", "pymodbus.client", "library failure"),
    ]
    assert lines[0]["ts"].endswith("Z")


def test_logfmt_is_the_default_and_debug_is_filtered_at_info() -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(), stream=out)
    logging.getLogger("avila_edge.test").debug("hidden")
    logging.getLogger("avila_edge.test").info("journal opened")
    (line,) = out.getvalue().splitlines()
    assert line.startswith("ts=")
    assert 'level=info logger=avila_edge.test event="journal opened"' in line
