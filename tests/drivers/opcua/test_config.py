"""The OPC UA connection and address as the config loader sees them, and the subscription plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from avila_edge.config import load_config, parse_config
from avila_edge.config.model import DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import ConfigError, SystemClock
from avila_edge.driver import load_plugins
from drivers.opcua import plugin
from drivers.opcua.config import OpcUaAddress, OpcUaConnection, SubscriptionSettings, check_device
from drivers.opcua.driver import OpcUaDriver, plan

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "example-opcua.yaml"


def dev(points: tuple[PointConfig, ...] = (), **conn: Any) -> DeviceConfig:
    conn.setdefault("endpoint", "opc.tcp://plc:4840/ua")
    return DeviceConfig(id="plc", driver="opcua", connection=OpcUaConnection(**conn), points=points)


def test_the_driver_is_installed_under_its_entry_point() -> None:
    found = load_plugins()["opcua"]
    assert found is plugin
    assert isinstance(found.create(dev(), SystemClock()), OpcUaDriver)


def test_the_example_site_loads_and_plans_one_subscription_per_publishing_interval() -> None:
    cfg = load_config(EXAMPLE, plugins=load_plugins())
    (device,) = cfg.devices
    conn: OpcUaConnection = device.connection
    assert conn.security_mode == "sign_and_encrypt"
    assert conn.subscription.publishing_interval == 1.0
    assert conn.subscription.sampling_interval == 0.5
    plans = plan(device)
    assert [(p.publishing_interval, len(p.points)) for p in plans] == [(1.0, len(device.points) - 2), (5.0, 2)]
    items = {device.points[m.handle].id: m for p in plans for m in p.points}
    assert items["pump1/motor_temperature"].deadband_abs == 0.5  # the point's own deadband
    assert items["pump1/flow"].deadband_abs == 0.05  # the subscription's
    assert items["pump2/speed"].sampling_interval == pytest.approx(0.1)
    assert items["pump1/flow"].node.namespace_uri == "urn:avila-edge:hil:pump-plant"
    assert items["pump1/flow"].queue_size == 2


def test_without_a_publishing_interval_the_devices_poll_interval_is_used() -> None:
    device = msgspec.structs.replace(
        dev((PointConfig(id="a/b", address=OpcUaAddress(node="i=2259")),)), timing=TimingConfig(poll_interval=0.25)
    )
    assert [p.publishing_interval for p in plan(device)] == [0.25]


@pytest.mark.parametrize(
    ("conn", "path", "says"),
    [
        ({"endpoint": "http://plc:4840"}, "connection.endpoint", "opc.tcp://host:4840/path"),
        ({"endpoint": "opc.tcp://plc:99999"}, "connection.endpoint", "opc.tcp://"),
        (
            {"security_mode": "sign", "trusted_server_certificates": ("t",)},
            "connection.certificate_dir",
            "needs a folder",
        ),
        ({"security_mode": "sign", "certificate_dir": "pki"}, "connection.trusted_server_certificates", "rejected/"),
        (
            {
                "security_mode": "sign",
                "security_policy": "basic128rsa15",
                "certificate_dir": "p",
                "trusted_server_certificates": ("t",),
            },
            "connection.security_policy",
            "basic128rsa15 is deprecated",
        ),
        ({"password_file": "/run/pw"}, "connection.username", "needs a username"),
        ({"application_uri": "gateway7"}, "connection.application_uri", "must be a URI"),
        ({"session_timeout": 0.5}, "connection.session_timeout", "at least 1s"),
        (
            {"subscription": SubscriptionSettings(publishing_interval=0)},
            "connection.subscription.publishing_interval",
            "more than 0",
        ),
        (
            {"subscription": SubscriptionSettings(queue_size=0)},
            "connection.subscription.queue_size",
            "between 1 and 10000",
        ),
        (
            {"subscription": SubscriptionSettings(deadband_abs=1.0, deadband_percent=2.0)},
            "connection.subscription.deadband_percent",
            "not both",
        ),
        (
            {"subscription": SubscriptionSettings(deadband_percent=150)},
            "connection.subscription.deadband_percent",
            "0 and 100",
        ),
        (
            {"subscription": SubscriptionSettings(sampling_interval=-1)},
            "connection.subscription.sampling_interval",
            "0",
        ),
    ],
)
def test_connection_problems_are_named_by_key(conn: dict[str, Any], path: str, says: str) -> None:
    problems = check_device(dev(**conn))
    assert [p for p in problems if p[0] == path and says in p[1]], problems


def test_a_deprecated_policy_passes_once_explicitly_allowed_and_security_none_needs_no_certificates() -> None:
    allowed = dev(
        security_mode="sign",
        security_policy="basic256",
        allow_deprecated_policies=True,
        certificate_dir="pki",
        trusted_server_certificates=("trusted",),
    )
    assert check_device(allowed) == []
    assert check_device(dev(security_policy="basic128rsa15")) == []  # no channel security: no policy in use


def test_point_addresses_are_checked_one_by_one() -> None:
    points = (
        PointConfig(id="a/ok", address=OpcUaAddress(node="ns=2;s=ok")),
        PointConfig(id="a/bad", address=OpcUaAddress(node="Pump1.Flow")),
        PointConfig(id="a/q", address=OpcUaAddress(node="i=1", queue_size=0, deadband_abs=-1.0)),
    )
    problems = dict(check_device(dev(points)))
    assert "is not a NodeId" in problems["points[1].address.node"]
    assert "between 1 and 10000" in problems["points[2].address.queue_size"]
    assert "0 or more" in problems["points[2].address.deadband_abs"]
    assert "points[0].address.node" not in problems


def test_the_loader_reports_opcua_mistakes_at_their_line() -> None:
    text = """\
site: {id: s}
assets: [{id: pump1}]
devices:
  - id: plc
    driver: opcua
    connection:
      endpoint: opc.tcp://plc:4840
      security_mode: encrypted
      publishing_interval: 1s
    points:
      - {id: pump1/flow, address: {node: "ns=2;s=pump1.flow", deadband: 1}}
      - {id: pump1/speed, address: {node: 5}}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, filename="site.yaml", plugins={"opcua": plugin})
    lines = [str(i) for i in err.value.issues]
    assert any(
        line.startswith("site.yaml:8: devices[0].connection.security_mode:") and "sign_and_encrypt" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("site.yaml:9: devices[0].connection.publishing_interval: unknown key") for line in lines
    ), lines
    assert any(line.startswith("site.yaml:11: devices[0].points[0].address.deadband") for line in lines), lines
    assert any(line.startswith("site.yaml:12: devices[0].points[1].address.node: expected text") for line in lines), (
        lines
    )


def test_a_node_id_mistake_is_reported_by_check_device_at_its_line() -> None:
    text = """\
site: {id: s}
assets: [{id: pump1}]
devices:
  - id: plc
    driver: opcua
    connection: {endpoint: "opc.tcp://plc:4840"}
    points:
      - {id: pump1/flow, address: {node: "ns=2;q=pump1.flow"}}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, filename="site.yaml", plugins={"opcua": plugin})
    (issue,) = err.value.issues
    assert issue.path == "devices[0].points[0].address.node"
    assert issue.line == 8
    assert "is not a NodeId" in issue.message
