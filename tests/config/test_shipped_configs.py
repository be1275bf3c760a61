"""Every configuration the project ships loads with the installed drivers, and the docs quote it faithfully."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avila_edge.config import check_config, load_config
from avila_edge.driver import load_plugins

ROOT = Path(__file__).resolve().parents[2]
# hil/targets*.yaml describe test rigs (hil/targets.py validates them), not gateway sites
SHIPPED = sorted(
    [*ROOT.glob("configs/*.yaml"), *(p for p in ROOT.glob("hil/*.yaml") if not p.name.startswith("targets"))]
)


def test_the_project_ships_an_example_site() -> None:
    assert ROOT / "configs" / "example-site.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_config_is_valid_with_the_installed_drivers(path: Path) -> None:
    assert [str(i) for i in check_config(path, plugins=load_plugins())] == []


def test_example_site_has_two_devices_and_every_data_type_family() -> None:
    cfg = load_config(ROOT / "configs" / "example-site.yaml", plugins=load_plugins())
    assert len(cfg.devices) == 2
    types = {p.type.value for d in cfg.devices for p in d.points}
    assert {"bool", "int16", "uint16", "uint32", "float32", "string"} <= types


def test_yaml_excerpts_in_the_configuration_reference_are_taken_from_the_example() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = (ROOT / "configs" / "example-site.yaml").read_text(encoding="utf-8")
    excerpts = re.findall(r"<!-- excerpt: configs/example-site.yaml -->\n```yaml\n(.*?)```", doc, re.DOTALL)
    assert excerpts, "docs/configuration.md quotes configs/example-site.yaml"
    for excerpt in excerpts:
        assert excerpt in example, f"this excerpt is no longer in configs/example-site.yaml:\n{excerpt}"
