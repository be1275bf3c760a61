"""Conversion into the model: unknown keys, wrong types, enums and missing keys in the plant's words."""

from __future__ import annotations

from collections.abc import Callable

Problems = Callable[[str], list[str]]


def test_unknown_key_suggests_the_closest_valid_key(problems: Problems, valid: str) -> None:
    text = valid.replace("      poll_interval: 500ms", "      pol_interval: 500ms")
    assert problems(text) == [
        "site.yaml:19: devices[0].timing.pol_interval: unknown key; did you mean 'poll_interval'?"
    ]


def test_unknown_key_without_a_close_match_lists_the_valid_keys(problems: Problems) -> None:
    assert problems("site: {id: a}\nhttp: {zzz: 1}\n") == [
        "site.yaml:2: http.zzz: unknown key; valid keys here: host, port, tls, cert_file, key_file, names, session_idle"
    ]


def test_unknown_top_level_section_is_named(problems: Problems) -> None:
    assert problems("site: {id: a}\njournl: {}\n") == ["site.yaml:2: journl: unknown key; did you mean 'journal'?"]


def test_misspelled_required_key_is_reported_once(problems: Problems, valid: str) -> None:
    text = valid.replace("address: {table: holding, address: 0}", "address: {table: holding, adress: 0}")
    assert problems(text) == ["site.yaml:23: devices[0].points[0].address.adress: unknown key; did you mean 'address'?"]


def test_data_type_error_lists_the_data_types_in_words(problems: Problems, valid: str) -> None:
    assert problems(valid.replace("type: float32", "type: float")) == [
        "site.yaml:24: devices[0].points[0].type: 'float' is not a data type; use one of bool, int16, uint16, "
        "int32, uint32, int64, uint64, float32, float64, string"
    ]


def test_other_enums_say_what_they_are(problems: Problems) -> None:
    text = "site: {id: a}\nlogging: {format: xml, level: loud}\njournal: {synchronous: off}\n"
    assert problems(text) == [
        "site.yaml:2: logging.format: 'xml' is not a log format; use one of json, logfmt",
        "site.yaml:2: logging.level: 'loud' is not a log level; use one of debug, info, warning, error",
        "site.yaml:3: journal.synchronous: expected text (one of normal, full), got true or false",
    ]


def test_wrong_types_are_named_in_words(problems: Problems, valid: str) -> None:
    text = valid.replace("deadband: 0.5", "deadband: [1]").replace("type: bool", "type: bool\n        writable: maybe")
    assert problems(text) == [
        "site.yaml:26: devices[0].points[0].deadband: expected a number, got a list",
        "site.yaml:30: devices[0].points[1].writable: expected true or false, got text",
    ]


def test_several_problems_in_one_item_are_all_reported(problems: Problems, valid: str) -> None:
    text = valid.replace("unit: m3/h", "unit: 5\n        scale: x\n        colour: red")
    assert problems(text) == [
        "site.yaml:25: devices[0].points[0].unit: expected text, got a whole number",
        "site.yaml:26: devices[0].points[0].scale: expected a number, got text",
        "site.yaml:27: devices[0].points[0].colour: unknown key; valid keys here: id, address, type, scale, offset, "
        "unit, description, poll_interval, deadband, writable",
    ]


def test_missing_required_key_points_at_the_enclosing_item(problems: Problems, valid: str) -> None:
    assert problems(valid.replace("  id: plant-a\n", "")) == ["site.yaml:1: site.id: missing required key"]
    assert problems(valid.replace("    driver: fake\n", "")) == [
        "site.yaml:15: devices[0].driver: missing required key"
    ]


def test_a_section_that_is_not_a_mapping_is_named(problems: Problems) -> None:
    assert problems("site: {id: a}\njournal: 5\n") == [
        "site.yaml:2: journal: expected a mapping of keys, got a whole number"
    ]
