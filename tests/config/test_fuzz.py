"""Whatever the text, the loader answers with a config or a ConfigError carrying issues — never anything else."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avila_edge.config import parse_config
from avila_edge.config._yaml import count_lines
from avila_edge.core import ConfigError
from avila_edge.driver import DriverPlugin

_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["5s", "250ms", "64KiB", "holding", "float32", "pump1/flow", "fake", "-1", "1e400"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
_KEYS = st.sampled_from(["id", "driver", "connection", "points", "timing", "address", "type", "host", "port", "table",
                         "deadband", "poll_interval", "parent", "max_bytes", "max_age", "scale", "enabled", "x"])  # fmt: skip


def _only_config_errors(text: str, plugins: dict[str, DriverPlugin]) -> None:
    issues = []
    try:
        parse_config(text, filename="x.yaml", plugins=plugins)
    except ConfigError as exc:
        issues = exc.issues
        assert issues, "a ConfigError must carry at least one issue"
    for issue in issues:
        assert issue.file == "x.yaml"
        assert issue.line is None or 1 <= issue.line <= count_lines(text)
        assert issue.message


@_SETTINGS
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_random_text_never_raises_anything_but_config_error(plugins: dict[str, DriverPlugin], text: str) -> None:
    _only_config_errors(text, plugins)


@_SETTINGS
@given(_VALUES, st.sampled_from(["devices", "assets", "site", "journal", "http", "logging", "state_dir"]))
def test_random_yaml_sections_never_raise_anything_but_config_error(
    plugins: dict[str, DriverPlugin], value: object, section: str
) -> None:
    _only_config_errors(yaml.safe_dump({"site": {"id": "a"}, section: value}), plugins)


@_SETTINGS
@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=8), max_size=3))
def test_random_devices_never_raise_anything_but_config_error(
    plugins: dict[str, DriverPlugin], devices: list[dict[str, object]]
) -> None:
    _only_config_errors(yaml.safe_dump({"site": {"id": "a"}, "assets": [{"id": "pump1"}], "devices": devices}), plugins)


@_SETTINGS
@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=1, max_value=40), st.text(max_size=20))
def test_a_valid_file_with_one_line_damaged_never_raises_anything_but_config_error(
    plugins: dict[str, DriverPlugin], valid: str, where: int, length: int, junk: str
) -> None:
    text = valid[:where] + junk + valid[where + length :]
    _only_config_errors(text, plugins)


@pytest.mark.parametrize("text", ["site: !!python/object:os.system {}\n", "site: !!binary aGVsbG8=\n", "? [a]\n: b\n"])
def test_unusual_yaml_is_a_config_error(plugins: dict[str, DriverPlugin], text: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(textwrap.dedent(text), filename="x.yaml", plugins=plugins)
