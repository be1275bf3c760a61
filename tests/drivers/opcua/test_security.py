"""Secure channels, server trust and logins against the real in-process asyncua server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from avila_edge.core import Quality
from hil.certs import application_certificate
from hil.opcua_server import MODERN_POLICIES, OpcUaPlant

from .conftest import device, point, running

pytestmark = pytest.mark.asyncio(loop_scope="module")

USERS = {"operator": "s3cret-Pa55"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[OpcUaPlant]:
    policies = (*MODERN_POLICIES, "Basic256_Sign")
    async with OpcUaPlant(assets=("pump1",), policies=policies, users=USERS, tick=None) as plant:
        yield plant


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "opcua-password"
    path.write_text(USERS["operator"] + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize(
    ("mode", "policy"),
    [
        ("none", "basic256sha256"),
        ("sign_and_encrypt", "basic256sha256"),
        ("sign", "aes256_sha256_rsapss"),
        ("sign_and_encrypt", "aes128_sha256_rsaoaep"),
    ],
)
async def test_each_security_mode_and_policy_reads_the_plant(
    server: OpcUaPlant, tmp_path: Path, password_file: str, mode: str, policy: str
) -> None:
    await server.write_value("pump1", "pressure", 4.5)
    dev = device(
        server.endpoint,
        [
            point("pump1/pressure", server.node_id("pump1", "pressure")),
            point("pump1/speed_setpoint", server.node_id("pump1", "speed_setpoint"), writable=True),
        ],
        security_mode=mode,
        security_policy=policy,
        certificate_dir=str(tmp_path / "pki"),
        trusted_server_certificates=(str(server.certificate.cert),),
        username="operator",
        password_file=password_file,
    )
    async with running(dev) as (driver, sink):
        await sink.wait_value("pump1/pressure", 4.5)
        await driver.write("pump1/speed_setpoint", 1475.0)  # a write travels the same channel
        await sink.wait_value("pump1/speed_setpoint", 1475.0)
    if mode != "none":
        made = (tmp_path / "pki" / "client-cert.der").read_bytes()
        assert made  # the client certificate was made on first start


async def test_an_untrusted_server_certificate_is_refused_and_kept_for_review(
    server: OpcUaPlant, tmp_path: Path, password_file: str
) -> None:
    stranger = application_certificate(tmp_path / "other", "another server", "urn:example:other")
    dev = device(
        server.endpoint,
        [point("pump1/flow", server.node_id("pump1", "flow"))],
        security_mode="sign_and_encrypt",
        certificate_dir=str(tmp_path / "pki"),
        trusted_server_certificates=(str(stranger.cert),),
        username="operator",
        password_file=password_file,
    )
    async with running(dev, connected=False) as (driver, sink):
        refused = await sink.wait_quality("pump1/flow", Quality.BAD)
        assert not driver.health().connected
    fingerprint = server.certificate.fingerprint
    assert refused.reason.startswith("refused: the server certificate 'CN=hil pump plant'")
    assert f"sha256 {fingerprint[:16]} is not trusted" in refused.reason
    assert (tmp_path / "pki" / "rejected" / f"{fingerprint}.der").read_bytes() == server.certificate.der
    assert driver.health().errors["device_rejected"] >= 1


async def test_a_folder_of_trusted_certificates_is_read_at_each_connect(
    server: OpcUaPlant, tmp_path: Path, password_file: str
) -> None:
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    dev = device(
        server.endpoint,
        [point("pump1/flow", server.node_id("pump1", "flow"))],
        security_mode="sign",
        certificate_dir=str(tmp_path / "pki"),
        trusted_server_certificates=(str(trusted),),
        username="operator",
        password_file=password_file,
    )
    async with running(dev, connected=False) as (driver, sink):
        await sink.wait_for(
            lambda c: "no certificates are trusted yet" in getattr(c.latest.get("pump1/flow"), "reason", "")
        )
        # the operator reviews the rejected certificate and trusts it, without restarting anything
        rejected = next((tmp_path / "pki" / "rejected").iterdir())
        rejected.rename(trusted / "plant.der")
        await sink.wait_quality("pump1/flow", Quality.GOOD)
        assert driver.health().connected


async def test_a_deprecated_policy_is_refused_unless_explicitly_allowed(
    server: OpcUaPlant, tmp_path: Path, password_file: str
) -> None:
    common = {
        "security_mode": "sign",
        "security_policy": "basic256",
        "certificate_dir": str(tmp_path / "pki"),
        "trusted_server_certificates": (str(server.certificate.cert),),
        "username": "operator",
        "password_file": password_file,
    }
    points = [point("pump1/flow", server.node_id("pump1", "flow"))]
    async with running(device(server.endpoint, points, **common), connected=False) as (_, sink):
        refused = await sink.wait_quality("pump1/flow", Quality.BAD)
    assert "basic256 is deprecated" in refused.reason
    assert "allow_deprecated_policies" in refused.reason
    allowed = device(server.endpoint, points, allow_deprecated_policies=True, **common)
    async with running(allowed) as (_, sink):
        await sink.wait_quality("pump1/flow", Quality.GOOD)


async def test_a_wrong_password_is_bad_with_the_reason_and_never_logged(
    server: OpcUaPlant, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    dev = device(
        server.endpoint,
        [point("pump1/flow", server.node_id("pump1", "flow"))],
        username="operator",
        password_file=str(wrong),
    )
    with caplog.at_level(logging.DEBUG):
        async with running(dev, connected=False) as (driver, sink):
            refused = await sink.wait_quality("pump1/flow", Quality.BAD)
    assert refused.reason == "refused: the server refused the login: BadUserAccessDenied"
    assert driver.health().errors["device_rejected"] >= 1
    assert "not-the-password" not in caplog.text
    assert "not-the-password" not in repr(dev)


async def test_an_anonymous_login_to_a_server_that_wants_users_is_refused(server: OpcUaPlant) -> None:
    dev = device(server.endpoint, [point("pump1/flow", server.node_id("pump1", "flow"))])
    async with running(dev, connected=False) as (_, sink):
        refused = await sink.wait_quality("pump1/flow", Quality.BAD)
    assert refused.reason == "refused: the server refused the login: BadIdentityTokenRejected"


async def test_an_unreadable_password_file_is_bad_naming_the_file(server: OpcUaPlant, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "password"
    dev = device(
        server.endpoint,
        [point("pump1/flow", server.node_id("pump1", "flow"))],
        username="operator",
        password_file=str(missing),
    )
    async with running(dev, connected=False) as (_, sink):
        bad = await sink.wait_quality("pump1/flow", Quality.BAD)
    assert bad.reason == f"link down: cannot read password_file {missing}: No such file or directory"
