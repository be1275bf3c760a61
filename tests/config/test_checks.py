"""Checks across keys and sections: ids, the asset tree, ranges — all reported together, each at its line."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from avila_edge.config import parse_config
from avila_edge.driver import DriverPlugin

Problems = Callable[[str], list[str]]
SAFE = "letters, digits, '-', '_' and '.' (starting with a letter or digit)"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("max_bytes: 64MiB", "max_bytes: 10KiB", "site.yaml:6: journal.max_bytes: must be at least 1MiB"),
        ("max_age: 7d", "max_age: 0s", "site.yaml:7: journal.max_age: must be greater than 0 (leave it out to keep entries of any age)"),
        ("max_age: 7d", "batch_max: 0", "site.yaml:7: journal.batch_max: must be at least 1"),
        ("port: 0}", "port: 65536}", "site.yaml:8: http.port: must be between 1 and 65535 (0 picks a free port)"),
        ("port: 0}", "port: -1}", "site.yaml:8: http.port: must be between 1 and 65535 (0 picks a free port)"),
        ("timeout: 2s", "timeout: 0s", "site.yaml:20: devices[0].timing.timeout: must be greater than 0"),
        ("poll_interval: 500ms", "poll_interval: 0", "site.yaml:19: devices[0].timing.poll_interval: must be greater than 0"),
        ("timeout: 2s", "timeout: 2s\n      retries: -1", "site.yaml:21: devices[0].timing.retries: must be 0 or more"),
        ("timeout: 2s", "timeout: 2s\n      backoff_initial: 5s\n      backoff_max: 1s",
         "site.yaml:22: devices[0].timing.backoff_max: must be at least backoff_initial"),
        ("poll_interval: 5m", "poll_interval: 0ms", "site.yaml:30: devices[0].points[1].poll_interval: must be greater than 0"),
        ("deadband: 0.5", "deadband: -1", "site.yaml:26: devices[0].points[0].deadband: must be 0 or more"),
        ("deadband: 0.5", "scale: .nan", "site.yaml:26: devices[0].points[0].scale: must be a finite number"),
        ("  id: plant-a", "  id: plant a", f"site.yaml:2: site.id: site id 'plant a' may only use {SAFE}"),
        ("  id: plant-a", "  id: ''", "site.yaml:2: site.id: the site id must not be empty"),
        ("  id: plant-a", "  id: -plant", f"site.yaml:2: site.id: site id '-plant' may only use {SAFE}"),
        ("- id: plc1", "- id: plc/1", f"site.yaml:15: devices[0].id: device id 'plc/1' may only use {SAFE}"),
        ("id: pump1/flow", "id: flow", "site.yaml:22: devices[0].points[0].id: point id 'flow' must be 'asset/point', e.g. 'pump1/flow'"),
        ("id: pump1/flow", "id: pump1/flow/x", "site.yaml:22: devices[0].points[0].id: point id 'pump1/flow/x' must be 'asset/point', e.g. 'pump1/flow'"),
        ("id: pump1/flow", "id: pump1/flow rate",
         f"site.yaml:22: devices[0].points[0].id: point id 'pump1/flow rate': asset and point names may only use {SAFE}"),
    ],
)  # fmt: skip
def test_values_out_of_range_are_refused_at_their_line(
    problems: Problems, valid: str, old: str, new: str, expected: str
) -> None:
    assert old in valid
    assert problems(valid.replace(old, new)) == [expected]


@pytest.mark.parametrize("port", [0, 1, 8080, 65535])
def test_every_valid_http_port_is_accepted(plugins: dict[str, DriverPlugin], port: int) -> None:
    assert parse_config(f"site: {{id: s}}\nhttp: {{port: {port}}}\n", filename="x", plugins=plugins).http.port == port


def test_point_ids_are_unique_across_devices(problems: Problems, valid: str) -> None:
    second = (
        "  - id: plc2\n    driver: fake\n    connection: {host: 10.0.0.2}\n    points:\n"
        "      - id: pump1/flow\n        address: {table: holding, address: 0}\n"
    )
    assert problems(valid + second) == [
        "site.yaml:35: devices[1].points[0].id: point 'pump1/flow' is already defined on device 'plc1'"
    ]


def test_device_ids_are_unique(problems: Problems, valid: str) -> None:
    second = "  - id: plc1\n    driver: fake\n    connection: {host: 10.0.0.2}\n    points: []\n"
    assert problems(valid + second) == ["site.yaml:31: devices[1].id: device 'plc1' is already declared (devices[0])"]


def test_point_of_an_undeclared_asset_names_the_declared_ones(problems: Problems, valid: str) -> None:
    text = valid + "      - id: pump9/speed\n        address: {table: holding, address: 8}\n"
    assert problems(text) == [
        "site.yaml:31: devices[0].points[2].id: asset 'pump9' is not declared under assets: (declared: line1, pump1)"
    ]


def test_asset_ids_are_unique_and_safe(problems: Problems, valid: str) -> None:
    text = valid.replace("  - id: line1\n", "  - id: line1\n  - id: line1\n  - id: 'line 2'\n")
    assert problems(text) == [
        "site.yaml:12: assets[1].id: asset 'line1' is already declared (assets[0])",
        f"site.yaml:13: assets[2].id: asset id 'line 2' may only use {SAFE}",
    ]


def test_asset_parent_must_be_declared(problems: Problems, valid: str) -> None:
    text = valid.replace("    parent: line1", "    parent: line9")
    assert problems(text) == [
        "site.yaml:13: assets[1].parent: parent 'line9' is not a declared asset (declared: line1, pump1)"
    ]


def test_asset_hierarchy_must_not_loop(problems: Problems, valid: str) -> None:
    text = valid.replace("  - id: line1\n", "  - id: line1\n    parent: pump1\n")
    assert problems(text) == [
        "site.yaml:12: assets[0].parent: asset 'line1' is its own ancestor: line1 → pump1 → line1",
        "site.yaml:14: assets[1].parent: asset 'pump1' is its own ancestor: pump1 → line1 → pump1",
    ]


def test_asset_that_is_its_own_parent_is_refused(problems: Problems, valid: str) -> None:
    text = valid.replace("  - id: line1\n", "  - id: line1\n    parent: line1\n")
    assert problems(text) == ["site.yaml:12: assets[0].parent: asset 'line1' is its own ancestor: line1 → line1"]


def test_cross_checks_still_run_next_to_conversion_errors(problems: Problems, valid: str) -> None:
    text = (
        valid.replace("  id: plant-a", "  id: plant a")
        .replace("timeout: 2s", "timeout: later")
        .replace("id: pump1/running", "id: pump1/flow")
        .replace("max_bytes: 64MiB", "max_bytes: 1KiB\n  synchronous: sometimes")
    )
    assert problems(text) == [
        f"site.yaml:2: site.id: site id 'plant a' may only use {SAFE}",
        "site.yaml:6: journal.max_bytes: must be at least 1MiB",
        "site.yaml:7: journal.synchronous: 'sometimes' is not a synchronous mode; use one of normal, full",
        "site.yaml:21: devices[0].timing.timeout: 'later' is not a duration; write seconds or e.g. 250ms, 2s, 5m, 1h, 7d",
        "site.yaml:28: devices[0].points[1].id: point 'pump1/flow' is already defined on device 'plc1'",
    ]


def test_messages_name_the_item_by_its_place_in_the_file_even_after_a_bad_item(problems: Problems, valid: str) -> None:
    text = (
        valid.replace("devices:\n", "devices:\n  - 42\n")
        + "      - id: nowhere/x\n        address: {table: input, address: 1}\n"
    )
    assert problems(text) == [
        "site.yaml:15: devices[0]: expected a mapping describing one device (id, driver, connection, points)",
        "site.yaml:32: devices[1].points[2].id: asset 'nowhere' is not declared under assets: (declared: line1, pump1)",
    ]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "uplinks:\n  - {host: 127.0.0.1, plaintext: true, batch_max: 0}\n",
            "uplinks[0]: batch_max must be at least 1",
        ),
        (
            "uplinks:\n  - {host: 127.0.0.1, plaintext: true, max_in_flight: 70000}\n",
            "uplinks[0]: max_in_flight must be between 1 and 65535 (MQTT packet ids)",
        ),
        (
            "sinks:\n  - {url: 'http://127.0.0.1:1', bucket: b, batch_max: 0}\n",
            "sinks[0]: batch_max must be at least 1",
        ),
    ],
)
def test_uplink_and_sink_batch_sizes_that_could_never_send_are_refused_at_their_line(
    problems: Callable[[str], list[str]], section: str, message: str
) -> None:
    assert problems("site: {id: a}\n" + section) == [f"site.yaml:3: {message}"]
