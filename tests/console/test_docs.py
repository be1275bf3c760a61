"""docs/console.md: its configuration example loads, and the screenshots it lists are the ones the tests take."""

from __future__ import annotations

import re
from pathlib import Path

from avila_edge.config import parse_config
from avila_edge.driver.registry import load_plugins

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "console.md"
TESTS = Path(__file__).with_name("test_console.py")


def test_the_console_page_example_configuration_loads() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1
    config = parse_config(blocks[0], filename="console.md", plugins=load_plugins())
    assert config.http.host == "0.0.0.0"
    (pump,) = config.asset_types
    assert pump.alarms[0].severity == "high"
    assert "speed_setpoint" in pump.writable


def test_every_screenshot_the_page_lists_is_taken_by_the_browser_tests() -> None:
    listed = set(re.findall(r"test-artifacts/console/([a-z]+)-(?:desktop|phone)\.png", DOC.read_text(encoding="utf-8")))
    taken = set(re.findall(r'screenshot\(page, "([a-z]+)"\)', TESTS.read_text(encoding="utf-8")))
    assert listed == taken
