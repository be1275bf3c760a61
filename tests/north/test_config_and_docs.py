"""The north section: the example of docs/north.md loads, mistakes name FILE:LINE, quality maps to status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avila_edge.config import parse_config
from avila_edge.config.north import ServerMode, ServerPolicy
from avila_edge.core import ConfigError, Quality
from avila_edge.north import naming

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "north.md"


def test_the_example_of_the_north_page_is_a_complete_valid_site() -> None:
    (text,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    config = parse_config(text, filename="north.md")
    opcua, mqtt = config.north.opcua, config.north.mqtt
    assert opcua is not None and mqtt is not None
    assert opcua.policies == (ServerPolicy.BASIC256SHA256, ServerPolicy.AES256_SHA256_RSAPSS)
    assert opcua.modes == (ServerMode.SIGN_AND_ENCRYPT,)
    assert not opcua.allow_none and not opcua.anonymous
    assert [u.name for u in opcua.users] == ["scada"]
    assert mqtt.sparkplug is not None and mqtt.sparkplug.group_id == "plants"
    assert mqtt.events == ("alarm", "anomaly", "desired")
    assert mqtt.commands  # the page's ACL section goes with it


def test_mqtt_commands_are_off_unless_turned_on() -> None:
    config = parse_config("site: {id: s}\nnorth:\n  mqtt: {}\n", filename="site.yaml")
    assert config.north.mqtt is not None and config.north.mqtt.commands is False


def test_north_is_off_unless_configured() -> None:
    config = parse_config("site: {id: s}\n", filename="site.yaml")
    assert config.north.opcua is None and config.north.mqtt is None


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("  opcua: {port: 4840}", 3, "nobody can log in"),
        ("  opcua: {anonymous: true, policies: [], allow_none: false}", 3, "no endpoint"),
        ("  opcua: {anonymous: true, policies: [basic128rsa15]}", 3, "basic256sha256"),
        ("  mqtt: {host: 10.1.2.3}", 3, "not loopback"),
        ("  mqtt: {topic_prefix: 'a/#'}", 3, "wildcards"),
        ("  mqtt: {sparkplug: {group_id: 'a/b'}}", 3, "without '/'"),
        ("  mqtt: {password_file: x}", 3, "needs a username"),
        ("  opcua: {users: [{name: h, password_file: p, role: boss}]}", 3, "operator"),
        ("  mqtt: {host: 10.1.2.3, plaintext: true, commands: true}", 3, "without a username"),
    ],
)
def test_mistakes_in_the_north_section_name_file_and_line(section: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"site: {{id: s}}\nnorth:\n{section}\n", filename="site.yaml")
    text = str(caught.value)
    assert text.startswith(f"site.yaml:{line}: north."), text
    assert message in text


@pytest.mark.parametrize(
    ("quality", "reason", "code"),
    [
        (Quality.GOOD, "", naming.GOOD),
        (Quality.BAD, "timeout after 500 ms", naming.BAD_TIMEOUT),
        (Quality.BAD, "connection refused", naming.BAD_NO_COMMUNICATION),
        (Quality.BAD, "BadSensorFailure", 0x808C0000),
        (Quality.BAD, "device sent nan", naming.BAD),
        (Quality.UNCERTAIN, "UncertainLastUsableValue", 0x40900000),
        (Quality.UNCERTAIN, "BadSensorFailure", naming.UNCERTAIN_SENSOR_NOT_ACCURATE),
        (Quality.UNCERTAIN, "estimated", naming.UNCERTAIN),
    ],
)
def test_quality_and_reason_become_an_opc_ua_status_code(quality: Quality, reason: str, code: int) -> None:
    names = {"BadSensorFailure": 0x808C0000, "UncertainLastUsableValue": 0x40900000}
    assert naming.status_code(quality, reason, names) == code


def test_common_units_have_their_unece_code() -> None:
    assert naming.unece_unit_id("°C") == int.from_bytes(b"CEL", "big")
    assert naming.unece_unit_id("furlongs") == -1
