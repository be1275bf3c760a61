"""docs/api.md: its configuration example loads as documented and it names every route."""

from __future__ import annotations

import re
from pathlib import Path

from avila_edge.config import parse_config
from avila_edge.web.app import operations

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def test_the_configuration_example_loads_with_the_documented_meaning() -> None:
    example = re.findall(r"```yaml\n(.*?)```", DOC, re.DOTALL)[0]
    http = parse_config(example, filename="docs/api.md").http
    assert (http.host, http.port, http.tls) == ("0.0.0.0", 8443, "auto")
    assert http.names == ("gw-north-02.plant.example", "10.20.0.12")
    assert http.session_idle == 12 * 3600


def test_every_route_is_in_the_endpoint_table_or_the_auth_sections() -> None:
    for op in operations():
        mentioned = f"{op.method} {op.path}" in DOC or (op.path in DOC and op.method in DOC)
        assert mentioned, f"{op.method} {op.path} is not documented"
