"""The OPC UA server against a real asyncua client, with a gateway reading the hil Modbus PLC."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import (
    SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)

from avila_edge.core import Quality
from avila_edge.north import naming
from drivers.opcua import pki

from .conftest import WITHIN, gateway_with, north_figures, until

NS = "urn:avila-edge:site:plant7"


def north(tmp_path: Path, *, extra: str = "", users: str = "") -> Any:
    (tmp_path / "scada.pass").write_text("s3cret-pw\n")
    trusted = tmp_path / "trusted"
    trusted.mkdir(exist_ok=True)

    def section(port: int) -> str:
        return (
            f"  opcua: {{port: {port}, trusted_client_certificates: [{trusted}],"
            f" users: [{{name: scada, password_file: {tmp_path / 'scada.pass'}}}{users}]{extra}}}"
        )

    return section


def client_identity(tmp_path: Path) -> pki.ClientIdentity:
    """A client application certificate the server trusts (copied into its trusted folder)."""
    identity = pki.ensure_client_certificate(tmp_path / "client", "urn:test:scada", hostname="localhost")
    trusted = tmp_path / "trusted" / "scada.der"
    if not trusted.exists():
        trusted.write_bytes(identity.cert_der)
    return identity


async def secure_client(
    tmp_path: Path,
    port: int,
    *,
    policy: Any = SecurityPolicyBasic256Sha256,
    mode: Any = None,
    password: str | None = "s3cret-pw",
) -> Client:
    identity = client_identity(tmp_path)
    client = Client(f"opc.tcp://127.0.0.1:{port}/avila-edge", timeout=WITHIN)
    client.application_uri = "urn:test:scada"
    await client.set_security(
        policy,
        str(identity.cert_path),
        str(identity.key_path),
        server_certificate=str(tmp_path / "state" / "opcua-server" / "server-cert.der"),
        mode=mode or ua.MessageSecurityMode.SignAndEncrypt,
    )
    if password is not None:
        client.set_user("scada")
        client.set_password(password)
    return client


async def wait_listening(port: int) -> None:
    async with asyncio.timeout(WITHIN):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return


async def test_a_scada_client_browses_subscribes_writes_a_setpoint_that_reaches_the_plc_and_reads_history(
    tmp_path: Path,
) -> None:
    async with gateway_with(tmp_path, north(tmp_path)) as (gateway, plc, port):
        await wait_listening(port)
        client = await secure_client(tmp_path, port)
        async with client:
            ns = await client.get_namespace_index(NS)
            site = client.get_node(ua.NodeId("site:plant7", ns))
            assert (await site.read_browse_name()).Name == "plant7"
            line = (await site.get_children())[0]
            assert (await line.read_browse_name()).Name == "line1"
            pump = await line.get_child(f"{ns}:pump1")
            names = {(await c.read_browse_name()).Name for c in await pump.get_children()}
            assert {"flow", "motor_temperature", "speed", "Alarms"} <= names
            flow = client.get_node(ua.NodeId("pump1/flow", ns))
            eu = await (await flow.get_child(f"{ns}:EngineeringUnits")).read_value()
            assert eu.DisplayName.Text == "m³/h"
            assert eu.UnitId == int.from_bytes(b"MQH", "big")

            changes: asyncio.Queue[ua.DataValue] = asyncio.Queue()

            class Handler:
                def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                    changes.put_nowait(data.monitored_item.Value)

            sub = await client.create_subscription(50, Handler())
            await sub.subscribe_data_change(flow)
            async with asyncio.timeout(WITHIN):
                while True:
                    dv = await changes.get()
                    if dv.Value.Value is not None:
                        break
            assert dv.StatusCode.is_good()
            assert isinstance(dv.Value.Value, float)
            assert dv.SourceTimestamp is not None
            async with asyncio.timeout(WITHIN):  # the variable and the twin show the same reading
                while True:
                    reported = gateway.twins.snapshot("pump1")["reported"]["flow"]  # type: ignore[index]
                    current = await flow.read_data_value()
                    if current.Value is not None and current.Value.Value == reported["value"]:
                        break
            assert current.SourceTimestamp is not None
            source = current.SourceTimestamp.replace(tzinfo=dt.UTC)  # when the device measured it
            since_epoch = source - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            assert abs(since_epoch // dt.timedelta(microseconds=1) - reported["ts_source"] // 1000) <= 1

            alarm = client.get_node(ua.NodeId("pump1/alarms/hot", ns))
            speed = client.get_node(ua.NodeId("pump1/speed", ns))
            await until(lambda: plc.plant.speed_setpoint != 1234)
            await speed.write_value(ua.DataValue(ua.Variant(1234.0, ua.VariantType.Double)))
            await until(lambda: plc.registers(10, 1) == [1234] or plc.plant.speed_setpoint == 1234)
            assert plc.plant.speed_setpoint == 1234
            desired = gateway.twins.snapshot("pump1")["desired"]["speed"]  # type: ignore[index]
            assert (desired["value"], desired["requested_by"]) == (1234.0, "opcua:scada")
            async with asyncio.timeout(WITHIN):
                while await speed.read_value() != 1234.0:
                    await asyncio.sleep(0.05)
            assert await alarm.read_value() == "normal"
            plc.plant.stick_sensor("motor_temperature", 95.0)
            async with asyncio.timeout(WITHIN):
                while await alarm.read_value() != "active":
                    await asyncio.sleep(0.05)
            temperature = await client.get_node(ua.NodeId("pump1/motor_temperature", ns)).read_data_value()
            assert temperature.Value is not None and temperature.Value.Value == 95.0

            with pytest.raises(ua.UaStatusCodeError) as refused:  # not writable: reported values only
                await flow.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
            assert refused.value.code in (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadNotWritable)
            with pytest.raises(ua.UaStatusCodeError) as mismatch:
                await speed.write_value(ua.DataValue(ua.Variant("fast", ua.VariantType.String)))
            assert mismatch.value.code == ua.StatusCodes.BadTypeMismatch
            figures, metrics = await north_figures(gateway)
            opcua = figures["opcua"]
            assert (opcua["connected"], opcua["sessions"], opcua["connects"], opcua["errors"]) == (True, 1, 1, 0)
            assert (opcua["commands"], opcua["refused_commands"], opcua["failed_commands"]) == (2, 1, 0)
            assert opcua["published"] > 0
            assert 'avila_edge_north_sessions{endpoint="opcua"} 1.0' in metrics
            assert 'avila_edge_north_commands_total{endpoint="opcua",outcome="accepted"} 1.0' in metrics
            assert 'avila_edge_north_commands_total{endpoint="opcua",outcome="refused"} 1.0' in metrics

            await gateway.journal.flush()
            start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
            history = await flow.read_raw_history(start, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
            stored = await gateway.journal.history("pump1/flow", 0, 1 << 62)
            assert len(history) >= 1
            assert [h.Value.Value for h in history] == [r.value for r in stored][: len(history)]
            page = await flow.read_raw_history(start, dt.datetime.now(dt.UTC), numvalues=1)
            assert len(page) == 1

            await plc.drop_link()  # the cable is pulled: the values go Bad with a reason
            async with asyncio.timeout(WITHIN):
                while (await flow.read_data_value(raise_on_bad_status=False)).StatusCode.is_good():  # type: ignore[union-attr]
                    await asyncio.sleep(0.05)
            bad = await flow.read_data_value(raise_on_bad_status=False)
            assert bad.StatusCode is not None and bad.StatusCode.is_bad()
            reason = await (await flow.get_child(f"{ns}:QualityReason")).read_value()
            assert reason
            assert bad.StatusCode.value == naming.status_code(Quality.BAD, reason)


POLICIES = [
    (SecurityPolicyBasic256Sha256, ua.MessageSecurityMode.Sign),
    (SecurityPolicyAes128Sha256RsaOaep, ua.MessageSecurityMode.SignAndEncrypt),
    (SecurityPolicyAes256Sha256RsaPss, ua.MessageSecurityMode.SignAndEncrypt),
]


async def test_every_offered_policy_and_mode_connects(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, north(tmp_path)) as (_gateway, _plc, port):
        await wait_listening(port)
        for policy, mode in POLICIES:
            async with await secure_client(tmp_path, port, policy=policy, mode=mode) as client:
                ns = await client.get_namespace_index(NS)
                assert (await client.get_node(ua.NodeId("pump1", ns)).read_browse_name()).Name == "pump1"


async def test_a_user_certificate_logs_in_and_may_write(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    operator = pki.ensure_client_certificate(tmp_path / "operator", "urn:test:operator", hostname="operator")
    (users / "operator.der").write_bytes(operator.cert_der)
    async with gateway_with(tmp_path, north(tmp_path, extra=f", user_certificates: [{users}]")) as (_g, plc, port):
        await wait_listening(port)
        client = await secure_client(tmp_path, port, password=None)
        await client.load_client_certificate(str(operator.cert_path))
        await client.load_private_key(str(operator.key_path))
        async with client:
            ns = await client.get_namespace_index(NS)
            speed = client.get_node(ua.NodeId("pump1/speed", ns))
            await speed.write_value(ua.DataValue(ua.Variant(1666.0, ua.VariantType.Double)))
            await until(lambda: plc.plant.speed_setpoint == 1666)
        stranger = pki.ensure_client_certificate(tmp_path / "stranger", "urn:test:stranger", hostname="stranger")
        client = await secure_client(tmp_path, port, password=None)
        await client.load_client_certificate(str(stranger.cert_path))
        await client.load_private_key(str(stranger.key_path))
        with pytest.raises(ua.UaStatusCodeError):  # a user certificate nobody configured
            async with client:
                pass
        anonymous = await secure_client(tmp_path, port, password=None)  # a secure channel, but no login
        with pytest.raises(ua.UaStatusCodeError):
            async with anonymous:
                pass
        assert plc.plant.speed_setpoint == 1666


async def test_no_security_anonymous_untrusted_clients_and_wrong_passwords_are_refused(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, north(tmp_path)) as (gateway, _plc, port):
        await wait_listening(port)
        url = f"opc.tcp://127.0.0.1:{port}/avila-edge"
        probe = Client(url, timeout=5)
        endpoints = await probe.connect_and_get_server_endpoints()
        assert endpoints
        assert all(e.SecurityMode != ua.MessageSecurityMode.None_ for e in endpoints)
        plain = Client(url, timeout=5)
        with pytest.raises((ua.UaError, OSError, TimeoutError)):
            async with plain:
                pass
        wrong = await secure_client(tmp_path, port, password="guess")
        with pytest.raises(ua.UaStatusCodeError) as denied:
            async with wrong:
                pass
        assert denied.value.code == ua.StatusCodes.BadUserAccessDenied
        (tmp_path / "trusted" / "scada.der").unlink()
        untrusted = await secure_client(tmp_path, port)
        (tmp_path / "trusted" / "scada.der").unlink()
        with pytest.raises((ua.UaError, OSError, TimeoutError)):
            async with untrusted:
                pass
        assert list((tmp_path / "state" / "opcua-server" / "rejected").glob("*.der"))
        figures, metrics = await north_figures(gateway)
        assert figures["opcua"]["errors"] == 2  # the wrong password and the untrusted certificate
        assert figures["opcua"]["sessions"] == 0
        assert 'avila_edge_north_errors_total{endpoint="opcua"} 2.0' in metrics


async def test_anonymous_sessions_and_viewer_users_may_read_but_not_write(tmp_path: Path) -> None:
    (tmp_path / "historian.pass").write_text("historian-pw\n")
    historian = f", {{name: historian, role: viewer, password_file: {tmp_path / 'historian.pass'}}}"
    section = north(tmp_path, extra=", allow_none: true, anonymous: true", users=historian)
    async with gateway_with(tmp_path, section) as (_g, plc, port):
        await wait_listening(port)
        anonymous = Client(f"opc.tcp://127.0.0.1:{port}/avila-edge", timeout=5)
        viewer = await secure_client(tmp_path, port, password=None)
        viewer.set_user("historian")
        viewer.set_password("historian-pw")
        for client in (anonymous, viewer):
            async with client:
                ns = await client.get_namespace_index(NS)
                speed = client.get_node(ua.NodeId("pump1/speed", ns))
                async with asyncio.timeout(WITHIN):
                    while await speed.read_value() is None:
                        await asyncio.sleep(0.05)
                with pytest.raises(ua.UaStatusCodeError) as denied:
                    await speed.write_value(ua.DataValue(ua.Variant(900.0, ua.VariantType.Double)))
                assert denied.value.code == ua.StatusCodes.BadUserAccessDenied
        assert plc.plant.speed_setpoint != 900
