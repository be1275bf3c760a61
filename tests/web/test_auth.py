"""The auth model over real HTTP: first-start setup, login and sessions, CSRF, roles, lockout, API tokens."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pty
import select
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avila_edge.web.app import operations
from avila_edge.web.sessions import Lockout, Sessions
from avila_edge.web.tls import CERT_FILE

from .site import ADMIN, add_user, bearer, client, login, make_token, running, setup_admin

OPEN = {("GET", "/api/setup"), ("POST", "/api/setup"), ("POST", "/api/login"), ("GET", "/healthz"),
        ("GET", "/api/openapi.json")}  # fmt: skip
LOOPBACK = {("GET", "/status"), ("GET", "/metrics")}
SAMPLE = {"asset": "pump1", "name": "setpoint", "point": "pump1%2Fflow", "alarm": "high_flow", "seq": "0",
          "username": "someone"}  # fmt: skip


def concrete(path: str) -> str:
    for key, value in SAMPLE.items():
        path = path.replace("{" + key + "}", value)
    return path


async def test_first_start_logs_a_one_time_setup_token_that_creates_the_first_admin_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "avila_edge.web.auth")
    async with running(tmp_path) as gateway, client() as http:
        base = gateway.http_url
        token_file = tmp_path / "setup-token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert [r.getMessage() for r in caplog.records if token in r.getMessage()]  # logged once, at WARNING
        assert token not in (tmp_path / "users.json").read_text() if (tmp_path / "users.json").exists() else True
        async with http.get(f"{base}/api/setup") as r:
            assert await r.json() == {"needed": True}
        wrong = {"token": "guess", "username": ADMIN[0], "password": ADMIN[1]}
        async with http.post(f"{base}/api/setup", json=wrong) as r:
            assert r.status == 403
        async with http.post(f"{base}/api/setup", json={**wrong, "token": token, "password": "short"}) as r:
            assert r.status == 400  # a password needs 8 characters
        admin = await setup_admin(http, gateway)
        assert not token_file.exists()
        users = tmp_path / "users.json"
        assert stat.S_IMODE(users.stat().st_mode) == 0o600
        stored = json.loads(users.read_text())
        assert ADMIN[1] not in users.read_text()
        assert stored["users"][0]["role"] == "admin"
        assert len(bytes.fromhex(stored["users"][0]["salt"])) == 16
        salt, digest = bytes.fromhex(stored["users"][0]["salt"]), stored["users"][0]["hash"]
        memory_hard = hashlib.scrypt(ADMIN[1].encode(), salt=salt, n=2**14, r=8, p=1, maxmem=64 * 2**20, dklen=32)
        assert digest == memory_hard.hex()  # scrypt with 16 MiB of memory per guess, as docs/api.md says
        async with http.get(f"{base}/api/setup") as r:
            assert await r.json() == {"needed": False}
        async with http.post(f"{base}/api/setup", json={**wrong, "token": token}) as r:
            assert r.status == 409
        async with http.get(admin.url("/api/me")) as r:
            assert await r.json() == {"user": ADMIN[0], "role": "admin", "csrf": admin.csrf}
        cookies = {c.key: c for c in http.cookie_jar}
        assert cookies["avila_session"]["httponly"] is True
        assert cookies["avila_session"]["samesite"] == "Strict"
        assert cookies["avila_csrf"].value == admin.csrf
    caplog.clear()
    async with running(tmp_path):  # the next start has a user: no token, no file
        assert not (tmp_path / "setup-token").exists()
    assert not [r for r in caplog.records if "setup token" in r.getMessage()]


async def test_every_api_route_but_setup_login_and_openapi_answers_401_without_login(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway, client() as http:
        for op in operations():
            url = gateway.http_url + concrete(op.path)
            async with http.request(op.method, url, json={}) as r:
                if (op.method, op.path) in OPEN:
                    assert r.status != 401, op.path
                elif (op.method, op.path) in LOOPBACK:
                    assert r.status == 200, op.path  # the listener is on loopback
                else:
                    assert r.status == 401, f"{op.method} {op.path}: {r.status}"
                    assert r.headers["WWW-Authenticate"].startswith("Bearer")
                    assert "error" in await r.json()
        async with http.get(f"{gateway.http_url}/api/openapi.json") as r:
            assert r.status == 200
        async with http.get(f"{gateway.http_url}/api/me", cookies={"avila_session": "0" * 64}) as r:
            assert r.status == 401  # an invented session id


async def test_off_loopback_https_is_on_by_default_and_status_and_metrics_need_a_login(tmp_path: Path) -> None:
    async with running(tmp_path, http="host: 0.0.0.0, port: 0") as gateway:
        base = gateway.http_url
        assert base.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=tmp_path / CERT_FILE)  # pinned: the self-signed certificate
        async with client(trusting) as http:
            for path in ("/status", "/metrics"):
                async with http.get(base + path) as r:
                    assert r.status == 401
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                assert set(await r.json()) == {"status", "problems"}
            admin = await setup_admin(http, gateway)
            assert all(c["secure"] for c in http.cookie_jar)
            token = await make_token(admin, "scraper", "viewer")
        async with client(trusting) as machine, machine.get(f"{base}/metrics", headers=bearer(token)) as r:
            assert r.status == 200


async def test_writes_with_a_session_need_the_csrf_header(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway, client() as http:
        admin = await setup_admin(http, gateway)
        body = {"name": "ci", "role": "viewer"}
        async with http.post(admin.url("/api/tokens"), json=body) as r:
            assert r.status == 403
            assert await r.json() == {"error": "CSRF token missing or wrong"}
        async with http.post(admin.url("/api/tokens"), json=body, headers={"X-CSRF-Token": "f" * 64}) as r:
            assert r.status == 403
        async with http.post(admin.url("/api/tokens"), json=body, headers=admin.writes()) as r:
            assert r.status == 201
        async with http.post(admin.url("/api/logout"), headers=admin.writes()) as r:
            assert r.status == 204
        async with http.get(admin.url("/api/me")) as r:
            assert r.status == 401


async def test_viewers_read_operators_write_desired_values_and_acknowledge_admins_manage(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway, client() as http:
        admin = await setup_admin(http, gateway)
        await add_user(admin, "vera", "viewer")
        await add_user(admin, "otto", "operator")
        base = gateway.http_url
        desired = "/api/twins/pump1/desired/setpoint"
        ack = "/api/alarms/pump1/high_flow/ack"
        async with client() as h:
            viewer = await login(h, base, "vera", "password-123")
            async with h.get(viewer.url("/api/twins/pump1")) as r:
                assert r.status == 200
            async with h.put(viewer.url(desired), json={"value": 5}, headers=viewer.writes()) as r:
                assert r.status == 403
            async with h.post(viewer.url(ack), headers=viewer.writes()) as r:
                assert r.status == 403
            async with h.post(viewer.url("/api/config/validate"), data="site: {id: x}", headers=viewer.writes()) as r:
                assert r.status == 403
            async with h.get(viewer.url("/api/users")) as r:
                assert r.status == 403
        async with client() as h:
            operator = await login(h, base, "otto", "password-123")
            async with h.put(operator.url(desired), json={"value": 5, "version": 0}, headers=operator.writes()) as r:
                assert r.status == 202, await r.text()
                assert (await r.json())["version"] == 1
            async with h.put(operator.url(desired), json={"value": 6, "version": 0}, headers=operator.writes()) as r:
                assert r.status == 409  # stale version
            async with h.put(operator.url("/api/twins/pump1/desired/flow"), json={"value": 1},
                             headers=operator.writes()) as r:  # fmt: skip
                assert r.status == 422  # not writable
            async with h.post(operator.url(ack), headers=operator.writes()) as r:
                assert r.status in (200, 409)  # 409 while the alarm has not been raised yet
            async with h.get(operator.url("/api/tokens")) as r:
                assert r.status == 403
            validate = operator.url("/api/config/validate")
            async with h.post(validate, data="site: {id: x}", headers=operator.writes()) as r:
                assert r.status == 403  # configuration is the admin's
            async with h.post(operator.url("/api/users"), json={"username": "eve", "password": "password-123",
                                                                "role": "admin"}, headers=operator.writes()) as r:  # fmt: skip
                assert r.status == 403
        async with http.get(admin.url("/api/users")) as r:
            assert {u["username"]: u["role"] for u in (await r.json())["users"]} == {
                "root": "admin",
                "vera": "viewer",
                "otto": "operator",
            }
        async with http.delete(admin.url("/api/users/root"), headers=admin.writes()) as r:
            assert r.status == 409  # the last admin stays
        async with http.delete(admin.url("/api/users/vera"), headers=admin.writes()) as r:
            assert r.status == 204
        async with http.post(f"{base}/api/login", json={"username": "vera", "password": "password-123"}) as r:
            assert r.status == 401


async def test_five_failed_logins_lock_the_user_out_with_retry_after(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway, client() as http:
        await setup_admin(http, gateway)
        url = f"{gateway.http_url}/api/login"
        form = json.dumps({"username": ADMIN[0], "password": ADMIN[1]})
        async with http.post(url, data=form, headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415  # what a cross-site form could send
        for _ in range(5):
            async with http.post(url, json={"username": ADMIN[0], "password": "wrong password"}) as r:
                assert r.status == 401
        async with http.post(url, json={"username": ADMIN[0], "password": ADMIN[1]}) as r:
            assert r.status == 429  # even the right password, until the window passes
            assert 0 < int(r.headers["Retry-After"]) <= 15 * 60


def test_lockout_counts_per_user_and_per_address_within_the_window() -> None:
    now = [0.0]
    lockout = Lockout(now=lambda: now[0])
    for i in range(5):
        assert lockout.retry_after("user:a", "addr:1") == 0
        lockout.fail(f"user:u{i}", "addr:1")  # five different names from one address
    assert lockout.retry_after("user:new", "addr:1") == pytest.approx(900)
    assert lockout.retry_after("user:new", "addr:2") == 0
    now[0] = 901.0
    assert lockout.retry_after("user:new", "addr:1") == 0


def test_sessions_end_after_the_idle_time_and_a_request_keeps_them_alive() -> None:
    now = [0.0]
    sessions = Sessions(idle=100.0, now=lambda: now[0])
    s = sessions.create("root", "admin")
    assert len(s.id) == 64
    now[0] = 90.0
    assert sessions.get(s.id) is s
    now[0] = 180.0
    assert sessions.get(s.id) is s  # 90 s after the last request
    now[0] = 281.0
    assert sessions.get(s.id) is None


async def test_api_tokens_authenticate_machines_without_csrf_and_can_be_revoked(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway, client() as http:
        admin = await setup_admin(http, gateway)
        token = await make_token(admin, "scada", "operator")
        async with http.get(admin.url("/api/tokens")) as r:
            listed = (await r.json())["tokens"]
        assert [(t["name"], t["role"]) for t in listed] == [("scada", "operator")]
        assert token not in (tmp_path / "users.json").read_text()
        async with client() as machine:
            url = admin.url("/api/twins/pump1/desired/setpoint")
            async with machine.put(url, json={"value": 3}, headers=bearer(token)) as r:
                assert r.status == 202
            async with machine.get(admin.url("/api/me"), headers=bearer(token)) as r:
                assert await r.json() == {"user": "scada", "role": "operator", "csrf": None}
            async with machine.get(admin.url("/api/users"), headers=bearer(token)) as r:
                assert r.status == 403
            async with http.delete(admin.url("/api/tokens/scada"), headers=admin.writes()) as r:
                assert r.status == 204
            async with machine.get(admin.url("/api/me"), headers=bearer(token)) as r:
                assert r.status == 401


def test_a_gateway_started_on_a_terminal_prints_the_setup_token_there(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"site: {{id: tty}}\nstate_dir: {tmp_path / 'state'}\nhttp: {{host: 127.0.0.1, port: 0}}\n")
    primary, secondary = pty.openpty()
    command = [str(Path(sys.executable).with_name("avila-edge")), "run", "--config", str(config)]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"one-time setup token:" not in seen or not seen.endswith(b"\n"):
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            assert proc.poll() is None, seen.decode(errors="replace")  # the gateway still runs
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                seen += os.read(primary, 4096)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        os.close(primary)
    (line,) = [ln for ln in seen.decode().splitlines() if "one-time setup token:" in ln]
    assert line.split()[-1] == (tmp_path / "state" / "setup-token").read_text().strip()
