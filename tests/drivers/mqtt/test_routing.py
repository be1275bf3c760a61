"""Configuration checks, subscriptions and topic/metric routing of the MQTT driver (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from avila_edge.config import load_config, parse_config
from avila_edge.core import ConfigError
from drivers.mqtt import plugin
from drivers.mqtt.config import Subscription, TlsFiles
from drivers.mqtt.routing import MetricKey, Routes, check_device, minimal_filters

from .conftest import device, point

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "example-mqtt.yaml"
JSON_SUB = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", value_path="$.v")


def test_the_shipped_example_config_is_valid_and_uses_every_way_of_addressing() -> None:
    config = load_config(EXAMPLE, plugins={"mqtt": plugin})
    (dev,) = config.devices
    routes = Routes(dev)
    assert [r.point.id for r in routes.for_topic("plant/pump1/flow")] == ["pump1/flow"]
    assert [r.point.id for r in routes.for_topic("plant-raw/tank1/level_mm")] == ["tank1/level"]
    assert [r.point.id for r in routes.for_topic("plant/pump1/status")] == ["pump1/speed_setpoint"]
    metric = routes.for_metric(MetricKey("plant", "edge1", "pump2", "speed"))
    assert metric is not None
    assert metric.point.id == "pump2/speed"
    uptime = routes.for_metric(MetricKey("plant", "edge1", None, "uptime"))
    assert uptime is not None
    assert uptime.point.id == "edge1/uptime"
    assert routes.is_sparkplug("spBv1.0/plant/DDATA/edge1/pump2")
    assert not routes.is_sparkplug("plant/pump1/flow")


def _yaml(points: str, subscriptions: str = "", extra: str = "") -> str:
    return f"""site: {{id: s1}}
assets: [{{id: pump1}}]
devices:
  - id: b1
    driver: mqtt
    connection:
      host: 127.0.0.1
{extra}      subscriptions: [{subscriptions}]
    points:
{points}"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, filename="site.yaml", plugins={"mqtt": plugin})
    return [str(i) for i in info.value.issues]


def test_unknown_address_keys_are_reported_at_their_line_with_a_suggestion() -> None:
    problems = _problems(_yaml("      - {id: pump1/flow, address: {topik: a/b}}\n"))
    assert problems == ["site.yaml:10: devices[0].points[0].address.topik: unknown key; did you mean 'topic'?"]


def test_a_point_no_template_reaches_is_reported_with_the_ways_to_fix_it() -> None:
    problems = _problems(_yaml("      - {id: pump1/flow, address: {}}\n"))
    assert len(problems) == 1
    assert "points[0].address: no subscription template yields 'pump1/flow'" in problems[0]
    assert problems[0].startswith("site.yaml:10:")


def test_wildcards_in_an_exact_topic_are_refused() -> None:
    problems = _problems(_yaml("      - {id: pump1/flow, address: {topic: plant/+/flow}}\n"))
    assert any("address.topic: a topic cannot contain the wildcards" in p for p in problems)


def test_a_bad_filter_template_and_value_path_are_each_reported() -> None:
    subs = "{filter: 'plant/#/x', template: 'plant/{asset}', value_path: 'v'}"
    problems = _problems(_yaml("      - {id: pump1/flow, address: {topic: a/b}}\n", subs))
    text = "\n".join(problems)
    assert "subscriptions[0].filter: '#' must be a whole level and the last one" in text
    assert "subscriptions[0].template: a template needs both {asset} and {point}" in text
    assert "subscriptions[0].value_path: value path 'v' must start with '$'" in text


def test_protocol_takes_only_5_or_3_1_1() -> None:
    problems = _problems(_yaml("      - {id: pump1/flow, address: {topic: a/b}}\n", extra="      protocol: 4\n"))
    assert any("connection.protocol" in p and "5, 3.1.1" in p for p in problems)


def test_check_device_reports_cross_field_problems() -> None:
    dev = device(
        70000,
        [
            point("pump1/a", topic="a/b", group="g", node="n", metric="m"),
            point("pump1/b", group="g", metric="m"),
            point("pump1/c", "string", topic="a/c", format="number"),
            point("pump1/d", topic="a/d", writable=True),
            point("pump1/e", topic="a/e", qos=3),
            point("pump1/f", topic="a/f", value_path="$.list[0]", command_topic="a/f/set", writable=True),
        ],
        password_file="/x",
        tls=TlsFiles(cert_file="c.pem"),
        max_queued=0,
    )
    found = dict(check_device(dev))
    assert found["connection.port"] == "must be between 1 and 65535"
    assert found["connection.password_file"] == "a password needs a username too"
    assert found["connection.max_queued"] == "must be between 1 and 1000000 messages"
    assert "cert_file and key_file go together" in found["connection.tls"]
    assert "not both" in found["points[0].address"]
    assert found["points[1].address.node"] == "a sparkplug point needs group, node and metric"
    assert "cannot fill a string point" in found["points[2].type"]
    assert "needs address.command_topic" in found["points[3].writable"]
    assert found["points[4].address.qos"] == "must be 0, 1 or 2"
    assert "cannot be written" in found["points[5].address.value_path"]


def test_a_valid_device_has_no_problems() -> None:
    dev = device(
        1883,
        [point("pump1/flow"), point("pump1/speed", group="plant", node="edge1", device="pump1", metric="speed")],
        subscriptions=[JSON_SUB],
    )
    assert check_device(dev) == []


def test_filters_covered_by_another_are_not_subscribed_twice() -> None:
    assert minimal_filters([("plant/#", 0), ("plant/+/flow", 1), ("plant/a/flow", 2), ("x/y", 0), ("x/y", 1)]) == (
        ("plant/#", 2),
        ("x/y", 1),
    )
    assert minimal_filters([("plant/a/flow", 1), ("plant/#", 0)]) == (("plant/#", 1),)


def test_subscriptions_cover_explicit_topics_and_sparkplug_nodes_once() -> None:
    dev = device(
        1883,
        [
            point("pump1/flow"),
            point("pump1/inlet", topic="plant/pump1/inlet"),
            point("pump1/level", topic="tanks/t1/level", qos=2),
            point("pump1/speed", group="plant", node="edge1", device="pump1", metric="speed"),
            point("pump1/uptime", group="plant", node="edge1", metric="uptime", qos=0),
        ],
        subscriptions=[JSON_SUB],
    )
    assert Routes(dev).subscriptions == (("plant/+/+", 1), ("tanks/t1/level", 2), ("spBv1.0/plant/+/edge1/#", 1))


def test_a_topic_feeds_its_explicit_points_and_its_template_point() -> None:
    dev = device(
        1883,
        [
            point("pump1/flow"),
            point("pump1/flow_raw", topic="plant/pump1/flow", format="number"),
            point("pump1/temp", topic="plant/pump1/flow", value_path="$.t"),
        ],
        subscriptions=[JSON_SUB],
    )
    routes = Routes(dev)
    assert [(r.point.id, r.format) for r in routes.for_topic("plant/pump1/flow")] == [
        ("pump1/flow_raw", "number"),
        ("pump1/temp", "json"),
        ("pump1/flow", "json"),
    ]
    assert routes.for_topic("plant/pump9/flow") == []
    assert routes.for_topic("other/topic") == []


def test_an_address_overrides_the_decoding_of_its_subscription() -> None:
    dev = device(1883, [point("pump1/flow", value_path="$.value.avg")], subscriptions=[JSON_SUB])
    (route,) = Routes(dev).for_topic("plant/pump1/flow")
    assert route.value_path is not None
    assert route.value_path.text == "$.value.avg"


def test_points_of_a_filter_are_those_no_other_filter_carries() -> None:
    dev = device(
        1883,
        [point("pump1/flow"), point("pump1/level", topic="tanks/t1/level")],
        subscriptions=[JSON_SUB],
    )
    routes = Routes(dev)
    assert routes.points_of("plant/+/+") == ["pump1/flow"]
    assert routes.points_of("tanks/t1/level") == ["pump1/level"]


def test_the_docs_page_shows_the_shipped_example_verbatim() -> None:
    page = (EXAMPLE.parents[1] / "docs" / "drivers" / "mqtt.md").read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") in page
