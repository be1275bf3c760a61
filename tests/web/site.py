"""A gateway for the API tests (counting driver, one asset with an alarm and a writable point) and the
steps every test takes through the auth model: first-start setup, login, API tokens."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.runtime.gateway import Gateway

from ..runtime.counting_driver import counting_plugins

SITE = """
site: {{id: api, name: API test site}}
state_dir: {state}
http: {{{http}}}
asset_types:
  - id: pump
    alarms:
      - {{id: high_flow, value: flow, kind: high, limit: 2, hysteresis: 0.5, severity: critical, message: flow high}}
assets: [{{id: pump1, type: pump, name: Pump 1}}]
devices:
  - id: dev1
    driver: counting
    connection: {{}}
    timing: {{poll_interval: 50ms}}
    points:
      - {{id: pump1/flow, unit: m3/h, address: {{}}}}
      - {{id: pump1/setpoint, writable: true, address: {{}}}}
"""
ADMIN = ("root", "correct horse battery")


def site_config(state: Path, *, http: str = "") -> Any:
    text = SITE.format(state=state, http=http or "host: 127.0.0.1, port: 0")
    return parse_config(text, filename="site.yaml", plugins=counting_plugins())


@contextlib.asynccontextmanager
async def running(state: Path, *, http: str = "") -> AsyncIterator[Gateway]:
    async with Gateway.running(site_config(state, http=http), clock=SystemClock(), plugins=counting_plugins()) as g:
        yield g


@dataclass
class Login:
    """A console login: the session cookie lives in ``http``'s cookie jar; writes send ``csrf``."""

    http: aiohttp.ClientSession
    base: str
    csrf: str

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def writes(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


async def setup_admin(http: aiohttp.ClientSession, gateway: Gateway) -> Login:
    """First-start setup with the token from ``<state_dir>/setup-token``; ``http`` is then logged in."""
    token = (gateway.config.state_dir / "setup-token").read_text().strip()
    body = {"token": token, "username": ADMIN[0], "password": ADMIN[1]}
    async with http.post(f"{gateway.http_url}/api/setup", json=body) as r:
        assert r.status == 201, await r.text()
        me = await r.json()
    return Login(http, gateway.http_url, me["csrf"])


async def login(http: aiohttp.ClientSession, base: str, username: str, password: str) -> Login:
    async with http.post(f"{base}/api/login", json={"username": username, "password": password}) as r:
        assert r.status == 200, await r.text()
        me = await r.json()
    return Login(http, base, me["csrf"])


async def add_user(admin: Login, username: str, role: str, password: str = "password-123") -> None:
    body = {"username": username, "password": password, "role": role}
    async with admin.http.post(admin.url("/api/users"), json=body, headers=admin.writes()) as r:
        assert r.status == 201, await r.text()


async def make_token(admin: Login, name: str, role: str) -> str:
    async with admin.http.post(
        admin.url("/api/tokens"), json={"name": name, "role": role}, headers=admin.writes()
    ) as r:
        assert r.status == 201, await r.text()
        token: str = (await r.json())["token"]
    return token


async def admin_token(gateway: Gateway, name: str = "tests") -> str:
    """Set the gateway up and return an admin API token (for tests that only need access)."""
    async with client() as http:
        admin = await setup_admin(http, gateway)
        return await make_token(admin, name, "admin")


def client(trust: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    """An HTTP client that keeps cookies of IP-address hosts (the gateway listens on 127.0.0.1) and, for
    HTTPS, trusts what ``trust`` trusts."""
    connector = aiohttp.TCPConnector(ssl=trust) if trust is not None else None
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
