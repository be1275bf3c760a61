"""The YAML layer: syntax errors, duplicate keys, keys that are not text, aliases, dates — each at its line."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from avila_edge.config import parse_config
from avila_edge.config._yaml import MAX_VALUES, YamlProblem, compose
from avila_edge.driver import DriverPlugin

Problems = Callable[[str], list[str]]


def test_syntax_error_is_one_issue_at_the_yaml_errors_line(problems: Problems, valid: str) -> None:
    (msg,) = problems(valid.replace("  id: plant-a", "  id: [plant-a"))
    assert msg.startswith("site.yaml:3: not valid YAML: ")


def test_bad_indentation_names_its_line(problems: Problems) -> None:
    (msg,) = problems("site:\n  id: a\n name: b\n")
    assert msg.startswith("site.yaml:3: not valid YAML: ")


def test_duplicate_key_is_refused_at_the_second_occurrence(problems: Problems, valid: str) -> None:
    text = valid.replace("  name: Plant A\n", "  name: Plant A\n  id: again\n")
    assert problems(text) == ["site.yaml:4: site.id: duplicate key (first given on line 2)"]


def test_duplicate_key_deep_in_a_point_names_the_full_path(problems: Problems, valid: str) -> None:
    text = valid.replace("        unit: m3/h\n", "        unit: m3/h\n        unit: l/s\n")
    assert problems(text) == ["site.yaml:26: devices[0].points[0].unit: duplicate key (first given on line 25)"]


def test_keys_that_read_as_numbers_or_booleans_must_be_quoted(problems: Problems) -> None:
    assert problems("site: {id: a}\non: 1\n") == ["site.yaml:2: key 'on' reads as true/false; put it in quotes"]
    assert problems("site: {id: a, 7: x}\n") == ["site.yaml:1: site: key '7' reads as a number; put it in quotes"]
    assert problems("site: {id: a}\n[a]: 1\n") == ["site.yaml:2: a key must be plain text, not a list or mapping"]


def test_merge_keys_are_refused(problems: Problems) -> None:
    assert problems("base: &b {id: a}\nsite:\n  <<: *b\n") == [
        "site.yaml:3: site: merge keys (<<) are not supported; write the keys out"
    ]


def test_anchors_and_aliases_may_repeat_a_value(plugins: dict[str, DriverPlugin], valid: str) -> None:
    text = valid.replace("address: {table: holding, address: 0}", "address: &a {table: holding, address: 0}")
    text = text.replace("address: {table: input, address: 4}", "address: *a")
    text = text.replace("      - id: pump1/running", "      - id: pump1/running")
    cfg = parse_config(text, filename="site.yaml", plugins=plugins)
    assert cfg.devices[0].points[1].address == cfg.devices[0].points[0].address


def test_alias_into_its_own_container_is_refused(problems: Problems) -> None:
    assert problems("site: &s {id: a, self: *s}\n") == [
        "site.yaml:1: site.self: an alias refers to the list or mapping that contains it"
    ]


def test_exponential_alias_expansion_is_refused() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for name, prev in zip("bcdefg", "abcdef", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    text = "\n".join(lines) + "\n"
    with pytest.raises(YamlProblem, match=f"more than {MAX_VALUES} values"):
        compose(text, "bomb.yaml")


def test_very_deep_nesting_is_a_config_issue(problems: Problems) -> None:
    (msg,) = problems("site: " + "[" * 2000 + "]" * 2000 + "\n")
    assert "nested too deeply" in msg or "nesting depth" in msg


def test_dates_stay_text(plugins: dict[str, DriverPlugin]) -> None:
    cfg = parse_config("site: {id: a, name: 2024-01-01}\n", filename="x.yaml", plugins=plugins)
    assert cfg.site.name == "2024-01-01"


def test_more_than_one_document_is_refused(problems: Problems) -> None:
    (msg,) = problems("site: {id: a}\n---\nsite: {id: b}\n")
    assert msg.startswith("site.yaml:2: not valid YAML: ")


def test_every_key_has_its_line() -> None:
    _, lines = compose("site:\n  id: a\ndevices:\n  - id: d\n    points:\n      - {id: x/y}\n", "f.yaml")
    assert lines[("site",)] == 1
    assert lines[("site", "id")] == 2
    assert lines[("devices", 0)] == 4
    assert lines[("devices", 0, "points", 0, "id")] == 6


def test_a_tagged_value_that_cannot_be_read_is_an_issue_at_its_line(problems: Problems) -> None:
    (msg,) = problems("site: {id: a}\njournal:\n  batch_max: !!int x\n")
    assert msg.startswith("site.yaml:3: journal.batch_max: cannot read value: ")
