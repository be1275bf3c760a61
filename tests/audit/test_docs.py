"""docs/audit.md quotes the shipped example configuration, and that configuration loads as quoted."""

from __future__ import annotations

import re
from pathlib import Path

from avila_edge.config import load_config
from avila_edge.config.model import AuditConfig
from avila_edge.driver.registry import load_plugins

ROOT = Path(__file__).resolve().parents[2]


def test_the_audit_page_quotes_the_example_site_and_it_loads_as_quoted() -> None:
    doc = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    example = (ROOT / "configs" / "example-site.yaml").read_text(encoding="utf-8")
    excerpts = re.findall(r"<!-- excerpt: configs/example-site.yaml -->\n```yaml\n(.*?)```", doc, re.DOTALL)
    assert excerpts
    for excerpt in excerpts:
        assert excerpt in example
    config = load_config(ROOT / "configs" / "example-site.yaml", plugins=load_plugins())
    assert config.audit == AuditConfig(
        checkpoint_interval=60.0, checkpoint_entries=10_000, origin="avila-edge/ws-north-02"
    )
