"""Durations and sizes: numbers or numbers with a unit, converted before the model sees them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from avila_edge.config import parse_config
from avila_edge.config._units import parse_duration, parse_size
from avila_edge.driver import DriverPlugin

Problems = Callable[[str], list[str]]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(2, 2.0), (0.25, 0.25), ("250ms", 0.25), ("2s", 2.0), ("1.5s", 1.5), ("5m", 300.0), ("1h", 3600.0),
     ("7d", 604800.0), ("10", 10.0), (".5s", 0.5), ("0", 0.0), ("3 s", 3.0)],
)  # fmt: skip
def test_duration_accepts_seconds_and_units(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["soon", "5 minutes", "-1s", "1h30m", "5M", "", True, None, [1], float("nan"), float("inf")]
)
def test_duration_refuses_what_is_not_a_duration(text: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_negative_duration_number_is_refused() -> None:
    with pytest.raises(ValueError, match="-5 is negative"):
        parse_duration(-5)


@pytest.mark.parametrize(
    ("text", "size"),
    [(1024, 1024), (2048.0, 2048), ("64KiB", 65536), ("16MB", 16_000_000), ("1GiB", 2**30), ("1.5KiB", 1536),
     ("10B", 10), ("2kB", 2000), ("1TiB", 2**40), ("100", 100)],
)  # fmt: skip
def test_size_accepts_bytes_and_units(text: object, size: int) -> None:
    assert parse_size(text) == size
    assert isinstance(parse_size(text), int)


@pytest.mark.parametrize("text", ["big", "16 megabytes", "-1KiB", "1Gi", "", False, None, {}])
def test_size_refuses_what_is_not_a_size(text: object) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_size_refuses_fractions_of_a_byte_and_negatives() -> None:
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size(1.5)
    with pytest.raises(ValueError, match="is negative"):
        parse_size(-1)


def test_durations_and_sizes_in_the_file_become_plain_numbers(plugins: dict[str, DriverPlugin], valid: str) -> None:
    text = valid.replace("max_bytes: 64MiB", "max_bytes: 2097152").replace("timeout: 2s", "timeout: 1500ms")
    text = text.replace("max_age: 7d", "max_age: 36h\n  commit_interval: 0.2")
    cfg = parse_config(text, filename="site.yaml", plugins=plugins)
    assert cfg.journal.max_bytes == 2 * 2**20
    assert cfg.journal.max_age == 36 * 3600.0
    assert cfg.journal.commit_interval == pytest.approx(0.2)
    assert cfg.devices[0].timing.timeout == 1.5
    assert isinstance(cfg.journal.max_bytes, int)
    assert isinstance(cfg.devices[0].timing.timeout, float)


def test_bad_duration_and_size_in_the_file_name_their_lines(problems: Problems, valid: str) -> None:
    text = valid.replace("max_bytes: 64MiB", "max_bytes: 64 megs").replace("poll_interval: 5m", "poll_interval: 5min")
    assert problems(text) == [
        "site.yaml:6: journal.max_bytes: '64 megs' is not a size; write bytes or e.g. 64KiB, 16MB, 1GiB",
        "site.yaml:30: devices[0].points[1].poll_interval: '5min' is not a duration; "
        "write seconds or e.g. 250ms, 2s, 5m, 1h, 7d",
    ]


def test_null_is_allowed_where_a_duration_is_optional(plugins: dict[str, DriverPlugin], valid: str) -> None:
    cfg = parse_config(valid.replace("max_age: 7d", "max_age: null"), filename="site.yaml", plugins=plugins)
    assert cfg.journal.max_age is None
