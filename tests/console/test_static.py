"""The console's files are all shipped in the package: nothing is fetched from another site."""

from __future__ import annotations

import re
from pathlib import Path

import avila_edge.web

STATIC = Path(avila_edge.web.__file__).with_name("static")
NAMESPACES = {"http://www.w3.org/2000/svg"}  # an XML namespace name, never fetched


def test_the_console_files_name_no_address_on_another_site() -> None:
    files = sorted(p for p in STATIC.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"index.html", "app.js", "app.css"}
    found = {
        (p.name, url)
        for p in files
        for url in re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)]*", p.read_text(encoding="utf-8"))
    }
    assert {(name, url) for name, url in found if url not in NAMESPACES} == set()


def test_the_page_allows_scripts_styles_and_connections_from_the_gateway_only() -> None:
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', index)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert re.findall(r'(?:src|href)="(/[^"]*)"', index) == ["/static/app.css", "/static/app.js"]
