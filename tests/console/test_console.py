"""The web console in Chromium against a real gateway on the hil/ Modbus PLC.

The first fixture goes through first-start setup in the browser; the tests then use the administrator's
browser context, an operator-level session for plant actions, and a viewer for role checks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect

from avila_edge.config import parse_config
from avila_edge.core import Event, SystemClock
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")
expect.set_options(timeout=10_000)  # CI machines are slow; every wait is still bounded

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
ADMIN = ("admin", "correct horse battery")
PLANT = "Console <i>test</i> plant"  # markup in data must show as text

SITE = """
site: {{id: console, name: "Console <i>test</i> plant"}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
audit: {{checkpoint_interval: 1s}}
uplinks:  # the cloud is away (nothing listens there): the sync page shows what waits for it
  - {{name: cloud, host: 127.0.0.1, port: {cloud}, plaintext: true, reconnect_initial: 200ms, reconnect_max: 1s}}
asset_types:
  - id: centrifugal-pump
    derived: {{hydraulic_power: flow * pressure / 36}}
    alarms:
      - id: motor-hot
        value: motor_temperature
        kind: high
        limit: 80
        hysteresis: 3
        delay: 0.2
        severity: high
        message: motor winding too hot
    writable:
      speed_setpoint: {{tolerance: 2, timeout: 10}}
  - id: line
    aggregates: {{total_flow: {{function: sum, of: flow}}}}
assets:
  - {{id: line1, name: Transfer line 1, type: line}}
  - {{id: pump1, name: Transfer pump 1, type: centrifugal-pump, parent: line1}}
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {port}}}
    timing: {{poll_interval: 200ms, timeout: 500ms, backoff_initial: 200ms}}
    points:
      - {{id: pump1/flow, address: {{table: holding, address: 0}}, type: float32, unit: m3/h}}
      - {{id: pump1/pressure, address: {{table: holding, address: 8}}, type: int16, scale: 0.01, unit: bar}}
      - {{id: pump1/motor_temperature, address: {{table: holding, address: 9}}, type: int16, scale: 0.1, unit: degC}}
      - {{id: pump1/speed_setpoint, address: {{table: holding, address: 10}}, type: uint16, unit: rpm, writable: true}}
      - {{id: pump1/running, address: {{table: discrete, address: 0}}, type: bool}}
      - {{id: pump1/vibration, address: {{table: holding, address: 32}}, type: float32, unit: mm/s}}
"""


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Console:
    """The running rig: the PLC, the gateway, its console URL and the shared browser."""

    plc: ModbusPlc
    gateway: Gateway
    url: str
    browser: Browser
    log: _Records
    state: Path
    token: str = ""
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    """Requests a page made anywhere but the gateway (a CDN, a font service...): there must be none."""

    def setup_token(self) -> str:
        """The one-time token the gateway wrote to ``<state_dir>/setup-token`` and logged at first start."""
        if not self.token:
            path = self.state / "setup-token"
            if path.exists():
                self.token = path.read_text().strip()
            else:
                said = [m for m in self.log.messages if re.search(r"setup token", m, re.IGNORECASE)]
                assert said, "the gateway did not announce a setup token"
                self.token = said[-1].split()[-1]
        return self.token

    async def new_page(self, viewport: ViewportSize | None = None) -> tuple[BrowserContext, Page]:
        context = await self.browser.new_context(base_url=self.url, viewport=viewport or DESKTOP, accept_downloads=True)
        context.set_default_timeout(10_000)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on(
            "request",
            lambda r: None if r.url.startswith((self.url + "/", "data:")) else self.foreign_requests.append(r.url),
        )
        return context, page

    async def screenshot(self, page: Page, name: str) -> None:
        """Save the page at desktop and phone size; on the phone nothing may overflow sideways."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            await page.set_viewport_size(size)
            await page.wait_for_function("document.getElementById('view').getAttribute('aria-busy') !== 'true'")
            await page.screenshot(path=ARTIFACTS / f"{name}-{label}.png", full_page=True)
            if label == "phone":
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"{name} overflows a phone screen: {width}px wide"
        await page.set_viewport_size(DESKTOP)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    if not CHROMIUM.exists():  # noqa: ASYNC240 (one stat before anything starts)
        pytest.skip("Debian's chromium is not installed")
    records = _Records()
    package_logger = logging.getLogger("avila_edge")
    old_level = package_logger.level
    package_logger.addHandler(records)
    package_logger.setLevel(logging.INFO)
    state = tmp_path_factory.mktemp("console-state")
    try:
        async with ModbusPlc() as plc:
            config = parse_config(SITE.format(state=state, port=plc.port, cloud=free_port()), filename="site.yaml")
            async with Gateway.running(config, clock=SystemClock()) as gateway, async_playwright() as p:
                browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
                try:
                    yield Console(plc, gateway, gateway.http_url, browser, records, state)
                finally:
                    await browser.close()
    finally:
        package_logger.removeHandler(records)
        package_logger.setLevel(old_level)


SETPOINT = 1234


def sel(test: str, **data: str) -> str:
    """A CSS selector for `data-test` plus optional `data-*` attributes."""
    return f'[data-test="{test}"]' + "".join(f'[data-{k.replace("_", "-")}="{v}"]' for k, v in data.items())


@dataclass
class Session:
    context: BrowserContext
    page: Page


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(console: Console) -> AsyncIterator[Session]:
    """First start: the console sends the browser to setup; a wrong token is refused, the right one works."""
    context, page = await console.new_page()
    await page.goto("/")
    await expect(page.locator(sel("setup-form"))).to_be_visible()
    await expect(page).to_have_url(f"{console.url}/#/setup")
    await console.screenshot(page, "setup")
    await page.fill(sel("setup-token"), "not-the-token")
    await page.fill(sel("setup-username"), ADMIN[0])
    await page.fill(sel("setup-password"), ADMIN[1])
    await page.click(sel("setup-submit"))
    await expect(page.locator(sel("setup-result") + " " + sel("message"))).to_be_visible()
    await page.fill(sel("setup-token"), console.setup_token())
    await page.click(sel("setup-submit"))
    await expect(page.locator(sel("site-title"))).to_have_text(PLANT)
    try:
        yield Session(context, page)
    finally:
        await context.close()


async def csrf(context: BrowserContext) -> str:
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    return cookies["avila_csrf"]


async def login(console: Console, user: str, password: str, viewport: ViewportSize = DESKTOP) -> Session:
    context, page = await console.new_page(viewport)
    await page.goto("/")
    await expect(page.locator(sel("login-form"))).to_be_visible()
    await page.fill(sel("login-username"), user)
    await page.fill(sel("login-password"), password)
    await page.click(sel("login-submit"))
    await expect(page.locator(sel("site-title"))).to_be_visible()
    return Session(context, page)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def users(console: Console, admin: Session) -> dict[str, str]:
    """An operator and a viewer, created by the administrator through the API with the session cookie."""
    created = {"operator": "op-anna", "viewer": "view-ben"}
    for role, name in created.items():
        r = await admin.context.request.post(
            "/api/users",
            data={"username": name, "password": f"{name}-secret-pw", "role": role},
            headers={"X-CSRF-Token": await csrf(admin.context)},
        )
        assert r.status in (200, 201), await r.text()
    return created


async def test_setup_is_single_use_and_the_admin_is_signed_in(console: Console, admin: Session) -> None:
    page = admin.page
    await expect(page.locator(sel("user-name"))).to_have_text(ADMIN[0])
    await expect(page.locator(sel("user-role"))).to_have_text("admin")
    r = await admin.context.request.get("/api/setup")
    assert (await r.json()) == {"needed": False}
    again = await admin.context.request.post(
        "/api/setup",
        data={"token": console.setup_token(), "username": "x", "password": "y" * 12},
        headers={"X-CSRF-Token": await csrf(admin.context)},
    )
    assert again.status in (403, 409)
    await page.goto("/#/setup")
    await expect(page.locator(sel("setup-done"))).to_be_visible()


async def test_login_refuses_a_wrong_password_and_accepts_the_right_one(console: Console, admin: Session) -> None:
    context, page = await console.new_page()
    try:
        await page.goto("/#/alarms")
        await expect(page.locator(sel("login-form"))).to_be_visible()
        await console.screenshot(page, "login")
        await page.fill(sel("login-username"), ADMIN[0])
        await page.fill(sel("login-password"), "wrong password")
        await page.click(sel("login-submit"))
        await expect(page.locator(sel("login-result"))).to_contain_text("Wrong user name or password")
        await page.fill(sel("login-password"), ADMIN[1])
        await page.click(sel("login-submit"))
        await expect(page.locator(sel("site-title"))).to_have_text(PLANT)
        assert any(c["name"] == "avila_session" and c["httpOnly"] for c in await context.cookies())
        await page.click(sel("logout"))
        await expect(page.locator(sel("login-form"))).to_be_visible()
    finally:
        await context.close()


async def test_the_overview_shows_assets_with_values_and_alarm_counts(console: Console, admin: Session) -> None:
    page = admin.page
    await page.goto("/#/")
    card = page.locator(sel("asset-card", asset="pump1"))
    await expect(card.locator(sel("asset-value", name="flow"))).to_contain_text("m3/h")
    await expect(card.locator(sel("asset-alarm-count"))).to_have_text("0")
    await expect(card).to_have_attribute("data-quality", "good")
    await expect(page.locator(sel("site-title"))).to_have_text(PLANT)
    await expect(page.locator("i")).to_have_count(0)
    await console.screenshot(page, "overview")


async def test_a_live_value_changes_on_the_asset_page(console: Console, admin: Session) -> None:
    page = admin.page
    await page.goto("/#/asset/pump1")
    value = page.locator(sel("reported-row", name="flow") + " " + sel("reported-value"))
    await expect(value).to_contain_text("m3/h")
    await expect(page.locator(sel("history-chart"))).to_be_visible()
    console.plc.plant.stick_sensor("flow", 43.21)  # the plant's flow meter now reads a value we know
    try:
        await expect(value).to_have_text("43.21 m3/h")
    finally:
        console.plc.plant.clear_faults()
    chart = page.locator(sel("history-chart"))
    await expect(chart).not_to_have_attribute("data-live", "0")
    await page.select_option(sel("history-point"), "flow")
    await expect(chart).not_to_have_attribute("data-buckets", "0")
    await expect(chart.locator(sel("chart-band"))).to_have_count(1)
    await expect(chart.locator(sel("chart-mean"))).to_have_count(1)


async def test_a_setpoint_set_from_the_console_is_written_to_the_plc_and_confirmed(
    console: Console, users: dict[str, str]
) -> None:
    s = await login(console, users["operator"], f"{users['operator']}-secret-pw")
    try:
        page = s.page
        await page.goto("/#/asset/pump1")
        names = page.locator(sel("desired-name") + " option")
        await expect(names).to_have_text(["speed_setpoint"])  # only the writable points are offered
        await page.select_option(sel("desired-name"), "speed_setpoint")
        await page.fill(sel("desired-value-input"), str(SETPOINT))
        await page.click(sel("desired-submit"))
        status = page.locator(sel("desired-row", name="speed_setpoint") + " " + sel("desired-status"))
        await expect(status).to_have_text("confirmed")
        await expect(page.locator(sel("desired-outcome"))).to_contain_text("confirmed by the device")
        assert console.plc.registers(10, 1) == [SETPOINT]  # the PLC's register holds the new setpoint
        assert console.plc.plant.speed_setpoint == SETPOINT
        reported = page.locator(sel("reported-row", name="speed_setpoint") + " " + sel("reported-value"))
        await expect(reported).to_have_text(f"{SETPOINT} rpm")
        await expect(page.locator(sel("desired-row", name="speed_setpoint") + " " + sel("desired-value"))).to_have_text(
            str(SETPOINT)
        )
        await console.screenshot(page, "asset")
    finally:
        await s.context.close()


async def test_an_alarm_from_a_plant_fault_is_acknowledged_in_the_console(
    console: Console, admin: Session, users: dict[str, str]
) -> None:
    s = await login(console, users["operator"], f"{users['operator']}-secret-pw")
    try:
        page = s.page
        await page.goto("/#/alarms")
        row = page.locator(sel("alarm-row", asset="pump1", alarm="motor-hot"))
        await expect(row.locator(sel("alarm-state"))).to_have_text("normal")
        console.plc.plant.stick_sensor("motor_temperature", 95.0)  # the motor reads hot
        await expect(row.locator(sel("alarm-state"))).to_have_text("active")
        await expect(row.locator(sel("alarm-ack"))).to_be_visible()
        await console.screenshot(page, "alarms")
        await row.locator(sel("alarm-ack")).click()
        await expect(row.locator(sel("alarm-state"))).to_have_text("acknowledged")
        await expect(row.locator(sel("alarm-ack"))).to_have_count(0)
        await admin.page.goto("/#/")
        count = admin.page.locator(sel("asset-card", asset="pump1") + " " + sel("asset-alarm-count"))
        await expect(count).to_have_text("1")
    finally:
        console.plc.plant.clear_faults()
        await s.context.close()


async def test_an_anomaly_is_acknowledged_by_an_operator_and_a_viewer_cannot(
    console: Console, users: dict[str, str]
) -> None:
    g = console.gateway
    attrs = {"active": True, "score": 5.5, "threshold": 3.0}
    await g.pipeline.record([Event(kind="anomaly", source="pump1/vibration_z", ts=g.clock.now_ns(), attrs=attrs)])
    viewer = await login(console, users["viewer"], f"{users['viewer']}-secret-pw")
    try:
        await viewer.page.goto("/#/alarms")
        row = viewer.page.locator(sel("anomaly-row"), has_text="pump1/vibration_z")
        await expect(row).to_be_visible()
        await expect(row.locator(sel("anomaly-ack"))).to_have_count(0)
    finally:
        await viewer.context.close()
    s = await login(console, users["operator"], f"{users['operator']}-secret-pw")
    try:
        page = s.page
        await page.goto("/#/alarms")
        row = page.locator(sel("anomaly-row"), has_text="pump1/vibration_z")
        await row.locator(sel("anomaly-ack")).click()
        await expect(row.locator(sel("anomaly-acked"))).to_have_text(f"by {users['operator']}")
        await expect(row.locator(sel("anomaly-ack"))).to_have_count(0)
        await console.screenshot(page, "anomalies")  # the acknowledgement column fits a phone too
    finally:
        await s.context.close()
    await g.journal.flush()
    acks = [e.event() for e in await g.journal.read(g.journal.first_seq, 100_000, kinds=[EntryKind.EVENT])]
    assert [(e.source, e.attrs["by"]) for e in acks if e.kind == "anomaly_ack"] == [("pump1/vibration_z", "op-anna")]


async def test_a_viewer_sees_values_but_no_set_or_acknowledge_controls(console: Console, users: dict[str, str]) -> None:
    s = await login(console, users["viewer"], f"{users['viewer']}-secret-pw")
    try:
        page = s.page
        await expect(page.locator(sel("user-role"))).to_have_text("viewer")
        await page.goto("/#/asset/pump1")
        await expect(page.locator(sel("reported-row", name="flow"))).to_be_visible()
        await expect(page.locator(sel("desired-form"))).to_have_count(0)
        await expect(page.locator(sel("asset-alarms"))).to_be_visible()
        await expect(page.locator(sel("alarm-ack"))).to_have_count(0)
        await page.goto("/#/config")
        await expect(page.locator(sel("config-yaml"))).to_contain_text("plc1")
        await expect(page.locator(sel("config-validate"))).to_have_count(0)
    finally:
        await s.context.close()


async def test_a_reading_is_proven_against_the_signed_checkpoint(console: Console, admin: Session) -> None:
    page = admin.page
    choice = page.locator(sel("proof-choose") + " option:not([value=''])")
    for _ in range(40):  # the checkpoint must cover a reading: one is signed every second
        await page.goto("/#/audit")
        await expect(page.locator(sel("checkpoint-note"))).to_be_visible()
        if await choice.count() > 0:
            break
        await page.wait_for_timeout(250)
    seq = await choice.first.get_attribute("value")
    assert seq is not None
    await page.select_option(sel("proof-choose"), seq)
    await page.click(sel("proof-submit"))
    await expect(page.locator(sel("proof-verified"))).to_have_attribute("data-verified", "true")
    await page.click(sel("proof-verify"))
    await expect(page.locator(sel("verify-result") + " " + sel("verify-ok"))).to_be_visible()
    async with page.expect_download() as info:
        await page.click(sel("proof-download"))
    download = await info.value
    path = ARTIFACTS / f"proof-{seq}.json"
    await download.save_as(path)
    proof = json.loads(path.read_text())
    assert proof["seq"] == int(seq)
    assert proof["verified"] is True
    await expect(page.locator(sel("proof-leaf"))).to_contain_text(f'"seq":{seq}')
    await console.screenshot(page, "audit")
    # an auditor hands back a saved proof: the intact one holds, an altered entry is named
    result = page.locator(sel("proof-file-result"))
    await page.set_input_files(sel("proof-file"), path)
    await expect(result.locator(sel("verify-ok"))).to_be_visible()
    entry = bytes.fromhex(proof["leaf"]).replace(b'"seq"', b'"seq" ')
    tampered = ARTIFACTS / f"proof-{seq}-altered.json"
    tampered.write_text(json.dumps({**proof, "leaf": entry.hex()}))
    await page.set_input_files(sel("proof-file"), tampered)
    await expect(result.locator(sel("verify-failed"))).to_contain_text("the entry was altered")


async def test_an_admin_validates_a_pasted_configuration_with_line_precise_issues(
    console: Console, admin: Session
) -> None:
    page = admin.page
    await page.goto("/#/config")
    await expect(page.locator(sel("config-yaml"))).to_contain_text("plc1")
    await page.fill(sel("config-input"), SITE.format(state=console.state, port=console.plc.port, cloud=1883))
    await page.click(sel("config-validate"))
    await expect(page.locator(sel("config-ok"))).to_be_visible()
    await page.fill(sel("config-input"), "site: {id: x}\ndevices:\n  - id: d1\n    driver: nosuchdriver\n")
    await page.click(sel("config-validate"))
    issue = page.locator(sel("config-issue", line="4"))
    await expect(issue).to_contain_text("config.yaml:4")
    await expect(issue).to_contain_text("unknown driver 'nosuchdriver'")
    await console.screenshot(page, "config")


async def test_sync_and_driver_pages_show_the_journal_and_the_plc_link(console: Console, admin: Session) -> None:
    page = admin.page
    await page.goto("/#/sync")
    await expect(page.locator(sel("sync-gaps"))).to_have_text("0")
    await expect(page.locator(sel("journal-table"))).to_contain_text("next_seq")
    r = await admin.context.request.get("/api/sync")
    cursors = (await r.json())["cursors"]
    readings = cursors["uplink:cloud:readings"]
    assert readings["lag"] > 0 and readings["queued_bytes"] > 0  # nothing has reached the cloud
    row = page.locator(sel("cursor-row")).filter(has_text="uplink:cloud:readings")
    await expect(row.locator(sel("cursor-queued"))).to_contain_text("B")
    await expect(page.locator(sel("uplink-item"))).to_contain_text("cloud")
    await console.screenshot(page, "sync")
    await page.goto("/#/drivers")
    row = page.locator(sel("driver-row")).filter(has_text="plc1")
    await expect(row.locator(sel("driver-connected"))).to_have_text("connected")
    await console.screenshot(page, "drivers")
    assert console.page_errors == []
    assert console.foreign_requests == []  # every page so far loaded only what the gateway served


async def test_on_a_phone_the_menu_folds_and_still_navigates(console: Console, users: dict[str, str]) -> None:
    s = await login(console, users["viewer"], f"{users['viewer']}-secret-pw", PHONE)
    page = s.page
    try:
        await expect(page.locator(sel("asset-card", asset="pump1"))).to_be_visible()
        await expect(page.locator(sel("nav-alarms"))).to_be_hidden()
        await page.click(sel("menu-toggle"))
        await page.click(sel("nav-alarms"))
        await expect(page.locator(sel("alarms-table"))).to_be_visible()
        await expect(page.locator(sel("nav-alarms"))).to_be_hidden()
    finally:
        await s.context.close()
