"""The gateway as an OPC UA server: the site's twins as an address space, writes as desired values,
HistoryRead from the journal.

Address space (namespace ``urn:avila-edge:site:<site>``; string node ids)::

    Objects/
      <site>                      folder            s=site:<site>
        <asset>                   object            s=<asset>        (children under their parent asset)
          <point>                 variable          s=<asset>/<point> value, status from quality, timestamps;
                                                                     EngineeringUnits, QualityReason properties;
                                                                     writable when the point is writable
          <derived>               variable          s=<asset>/<derived> (read-only)
          Alarms/<alarm>          variable (String) s=<asset>/alarms/<alarm>: inactive, active, ...
          Anomaly/<detector>/     object            s=<asset>/anomaly/<detector>: Active, Since, Score, ...
                                                    (read-only; ``opcua_anomaly.py``)

A write to a writable point becomes ``TwinService.set_desired`` (by ``opcua:<user>``); the result is
Good when the device took the write, ``BadNotWritable``/``BadTypeMismatch``/``BadUserAccessDenied``
when refused, ``BadDeviceFailure`` when the device write failed. The value shown stays the reported one
until the device confirms it. Anonymous sessions (when allowed) and users with role viewer may read and
subscribe, not write.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from asyncua import ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import SessionState
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from avila_edge.config.model import GatewayConfig, PointConfig
from avila_edge.config.north import OpcUaRole, OpcUaServerConfig, ServerMode, ServerPolicy
from avila_edge.core import Clock, Event, GatewayError, Quality
from avila_edge.journal import Journal
from avila_edge.north import naming
from avila_edge.north._changes import next_changes
from avila_edge.north.counters import NorthStats
from avila_edge.north.opcua_anomaly import AnomalyNodes, detectors
from avila_edge.north.opcua_history import JournalHistory
from avila_edge.north.opcua_logins import Logins
from avila_edge.north.opcua_space import discard, ensure_shelf
from avila_edge.north.opcua_values import (
    STATUS_NAMES,
    convert,
    data_value,
    desired_value,
    node_id,
    status,
    variant_type,
)
from avila_edge.twins.service import TwinService
from avila_edge.twins.state import NotWritable, WriteStatus
from drivers.opcua import pki

logger = logging.getLogger(__name__)

Recorder = Callable[[Sequence[Event]], Awaitable[None]]

CERT_FILE: Final = "server-cert.der"
KEY_FILE: Final = "server-key.pem"
_POLICY_TYPES: Final = {
    (ServerPolicy.BASIC256SHA256, ServerMode.SIGN): ua.SecurityPolicyType.Basic256Sha256_Sign,
    (ServerPolicy.BASIC256SHA256, ServerMode.SIGN_AND_ENCRYPT): ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    (ServerPolicy.AES128_SHA256_RSAOAEP, ServerMode.SIGN): ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    (ServerPolicy.AES128_SHA256_RSAOAEP, ServerMode.SIGN_AND_ENCRYPT):
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    (ServerPolicy.AES256_SHA256_RSAPSS, ServerMode.SIGN): ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    (ServerPolicy.AES256_SHA256_RSAPSS, ServerMode.SIGN_AND_ENCRYPT):
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}  # fmt: skip


class OpcUaServer:
    """``await server.run()`` serves the twins until cancelled; ``server.endpoint`` once ``ready`` is set."""

    def __init__(
        self,
        config: OpcUaServerConfig,
        gateway: GatewayConfig,
        *,
        twins: TwinService,
        journal: Journal,
        record: Recorder,
        passwords: Mapping[str, str],
        clock: Clock,
    ) -> None:
        self.config = config
        self.site = gateway.site
        self.twins = twins
        self.journal = journal
        self.record = record
        self.clock = clock
        self._passwords = dict(passwords)
        self._viewers = frozenset(u.name for u in config.users if u.role is OpcUaRole.VIEWER)
        self._points: dict[str, PointConfig] = {p.id: p for d in gateway.devices for p in d.points}
        self._types = {t.id: t for t in gateway.asset_types}
        self.state_dir = gateway.state_dir
        self.certificate_dir = config.certificate_dir or gateway.state_dir / "opcua-server"
        self.hostname = socket.gethostname()
        self.application_uri = config.application_uri or f"urn:avila-edge:{gateway.site.id}:opcua-server"
        self.port = config.port
        self.ready = asyncio.Event()
        self.writes_refused = 0
        self.writes = self.writes_failed = self.published = self.clients_refused = 0
        self._server: Server | None = None
        self._ns = 0
        self._nodes: dict[str, ua.NodeId] = {}  # "<asset>/<name>" and alarm ids -> node
        self._kinds: dict[str, ua.VariantType] = {}
        self._reasons: dict[str, ua.NodeId] = {}
        self._shown: dict[str, tuple[object, ...]] = {}
        self._reason_shown: dict[str, str] = {}
        self._writable: dict[ua.NodeId, str] = {}
        self._logins: Logins | None = None
        self._anomalies = AnomalyNodes(detectors(gateway))

    def counters(self) -> NorthStats:
        logins = self._logins
        return NorthStats(self.ready.is_set(), self._sessions(), 0 if logins is None else logins.accepted,
                          self.published, self.writes, self.writes_refused, self.writes_failed,
                          self.clients_refused + (0 if logins is None else logins.refused))  # fmt: skip

    def _sessions(self) -> int:
        """Client sessions open now (asyncua keeps them by authentication token)."""
        server = self._server
        if server is None or not self.ready.is_set():
            return 0
        sessions: dict[object, object] = getattr(server.iserver, "_external_sessions", {})
        return sum(1 for s in sessions.values() if getattr(s, "state", None) is not SessionState.Closed)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.config.host}:{self.port}/{self.config.path}"

    async def run(self) -> None:
        server = await self._build()
        self._server = server
        try:
            await server.start()
            if server.bserver is not None:
                self.port = int(server.bserver.port)
            queue = self.twins.subscribe()
            try:
                for asset in self.twins.assets():
                    await self._show(asset)
                self.ready.set()
                logger.info("OPC UA server for site %s at %s", self.site.id, self.endpoint)
                while True:
                    for asset in await next_changes(queue):
                        await self._show(asset)
            finally:
                self.twins.unsubscribe(queue)
        finally:
            self.ready.clear()
            clock = server.iserver.time_task
            if clock is not None:  # it sleeps a second between updates of CurrentTime: do not wait for that
                clock.cancel()
                await asyncio.wait([clock])
                server.iserver.time_task = None
            await server.stop()

    # -- building -----------------------------------------------------------------------------------

    async def _build(self) -> Server:
        c = self.config
        user_certs = await asyncio.to_thread(pki.load_trusted, [str(p) for p in c.user_certificates])
        self._logins = Logins(self._passwords, user_certs, c.anonymous)
        shelf = await ensure_shelf(self.state_dir)  # namespace 0 read from disk as clients need it
        server = Server(user_manager=self._logins)
        try:
            await server.init(shelf)
        except Exception as exc:  # a damaged shelf: any of dbm's, pickle's or asyncua's errors
            if shelf is None:
                raise
            discard(shelf, exc)
            server = Server(user_manager=self._logins)
            await server.init()
        server.set_server_name(f"avila-edge {self.site.id}")
        await server.set_application_uri(self.application_uri)
        server.set_endpoint(self.endpoint)
        kinds = [_POLICY_TYPES[(p, m)] for p in c.policies for m in c.modes]
        if c.allow_none:
            kinds.insert(0, ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(kinds)
        if c.policies:
            identity = await asyncio.to_thread(
                pki.ensure_client_certificate, self.certificate_dir, self.application_uri,
                hostname=self.hostname, cert_file=CERT_FILE, key_file=KEY_FILE,
            )  # fmt: skip
            await server.load_certificate(str(identity.cert_path))
            await server.load_private_key(str(identity.key_path))
        server.set_certificate_validator(self._validate_client)
        tokens: list[type] = []
        if c.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if c.users:
            tokens.append(ua.UserNameIdentityToken)
        if c.user_certificates:
            tokens.append(ua.X509IdentityToken)
        server.set_identity_tokens(tokens)
        self._ns = await server.register_namespace(naming.namespace_uri(self.site.id))
        await self._address_space(server)
        if c.history:
            points = {node: name for name, node in self._nodes.items() if name in self._points}
            server.iserver.history_manager.set_storage(JournalHistory(self.journal, points, c.history_max_values))
        service = server.iserver.attribute_service
        original = service.write

        async def write(params: ua.WriteParameters, user: User = User(role=UserRole.Admin)) -> list[ua.StatusCode]:  # noqa: B008
            results: list[ua.StatusCode | None] = []
            others: list[ua.WriteValue] = []
            for item in params.NodesToWrite:
                point = self._writable.get(item.NodeId) if item.AttributeId == AttributeIds.Value else None
                if point is None:
                    results.append(None)
                    others.append(item)
                else:
                    results.append(await self._write_desired(point, item, user))
            if others:
                rest = iter(await original(ua.WriteParameters(NodesToWrite=others), user=user))
                return [r if r is not None else next(rest) for r in results]
            return [r for r in results if r is not None]

        service.write = write  # type: ignore[method-assign]
        return server

    async def _address_space(self, server: Server) -> None:
        ns = self._ns
        site = await server.nodes.objects.add_folder(
            node_id(naming.site_node(self.site.id), ns), ua.QualifiedName(self.site.id, ns)
        )
        objects: dict[str, Node] = {}
        pending = list(self.twins.assets())
        while pending:  # parents before children
            progressed = False
            for asset in list(pending):
                parent = self.twins.snapshot(asset)["parent"]
                if isinstance(parent, str) and parent in pending:
                    continue
                under = objects.get(parent, site) if isinstance(parent, str) else site
                objects[asset] = await under.add_object(node_id(asset, ns), ua.QualifiedName(asset, ns))
                pending.remove(asset)
                progressed = True
            if not progressed:  # a parent cycle the config check missed: put the rest under the site
                for asset in pending:
                    objects[asset] = await site.add_object(node_id(asset, ns), ua.QualifiedName(asset, ns))
                pending = []
        for asset, obj in objects.items():
            for point in (p for pid, p in self._points.items() if pid.startswith(asset + "/")):
                name = point.id.partition("/")[2]
                await self._variable(obj, asset, name, variant_type(point.type), point.unit, point.writable)
            snapshot = self.twins.snapshot(asset)
            derived = snapshot["derived"]
            names = list(derived) if isinstance(derived, dict) else []
            kind = self._types.get(str(snapshot["type"]))
            if kind is not None:  # derived values and aggregates exist before they are first computed
                names += [*kind.derived, *kind.aggregates]
            for name in dict.fromkeys(names):
                if f"{asset}/{name}" not in self._nodes:
                    await self._variable(obj, asset, name, ua.VariantType.Double, "", writable=False)
            alarms = snapshot["alarms"]
            if isinstance(alarms, dict) and alarms:
                folder = await obj.add_folder(node_id(f"{asset}/alarms", ns), ua.QualifiedName("Alarms", ns))
                for alarm in alarms:
                    key = naming.alarm_node(asset, alarm)
                    node = await folder.add_variable(
                        node_id(key, ns), ua.QualifiedName(alarm, ns), ua.Variant("", ua.VariantType.String)
                    )
                    self._nodes[key] = node.nodeid
                    self._kinds[key] = ua.VariantType.String
            await self._anomalies.add(server, obj, asset, ns)

    async def _variable(
        self, obj: Node, asset: str, name: str, kind: ua.VariantType, unit: str, writable: bool
    ) -> None:
        ns = self._ns
        key = f"{asset}/{name}"
        waiting = ua.DataValue(Value=ua.Variant(None), StatusCode=status(naming.BAD_WAITING_FOR_INITIAL_DATA))
        node = await obj.add_variable(node_id(key, ns), ua.QualifiedName(name, ns), ua.Variant(None),
                                      datatype=ua.NodeId(ua.Int32(int(kind))))  # fmt: skip
        await node.write_attribute(AttributeIds.Value, waiting)
        eu = ua.EUInformation(
            NamespaceUri=naming.UNECE_UNITS_URI,
            UnitId=naming.unece_unit_id(unit),
            DisplayName=ua.LocalizedText(unit),
            Description=ua.LocalizedText(unit),
        )
        await node.add_property(ns, "EngineeringUnits", eu)
        reason = await node.add_property(ns, "QualityReason", ua.Variant("", ua.VariantType.String))
        self._reasons[key] = reason.nodeid
        access = ua.AccessLevel.CurrentRead.mask
        if key in self._points and self.config.history:
            access |= ua.AccessLevel.HistoryRead.mask
            await node.write_attribute(AttributeIds.Historizing, ua.DataValue(ua.Variant(True)))
        if writable:
            access |= ua.AccessLevel.CurrentWrite.mask
            self._writable[node.nodeid] = key
        for attr in (AttributeIds.AccessLevel, AttributeIds.UserAccessLevel):
            await node.write_attribute(attr, ua.DataValue(ua.Variant(access, ua.VariantType.Byte)))
        self._nodes[key] = node.nodeid
        self._kinds[key] = kind

    # -- values -------------------------------------------------------------------------------------

    async def _show(self, asset: str) -> None:
        server = self._server
        if server is None:
            return
        snapshot = self.twins.snapshot(asset)
        values: dict[str, dict[str, Any]] = {}
        for section in ("derived", "reported"):
            part = snapshot[section]
            if isinstance(part, dict):
                values.update(part)
        for name, v in values.items():
            key = f"{asset}/{name}"
            node = self._nodes.get(key)
            if node is None:
                continue
            quality = Quality[str(v["quality"]).upper()]
            shown = (v["value"], quality, v["reason"], v["ts_source"], v["ts_gateway"])
            if self._shown.get(key) == shown:
                continue
            self._shown[key] = shown
            value = convert(v["value"], self._kinds[key])
            reason = str(v["reason"])
            if value is None and v["value"] is not None:
                quality, reason = Quality.BAD, f"value {v['value']!r} does not fit the variable's type"
            dv = data_value(value, quality, reason, int(v["ts_source"]), int(v["ts_gateway"]), STATUS_NAMES,
                             kind=self._kinds[key])  # fmt: skip
            await server.write_attribute_value(node, dv)
            self.published += 1
            if self._reason_shown.get(key) != reason:
                self._reason_shown[key] = reason
                text = ua.DataValue(ua.Variant(reason, ua.VariantType.String))
                await server.write_attribute_value(self._reasons[key], text)
        alarms = snapshot["alarms"]
        for alarm, a in alarms.items() if isinstance(alarms, dict) else ():
            key = naming.alarm_node(asset, alarm)
            state = str(a["state"])
            if key in self._nodes and self._shown.get(key) != (state,):
                self._shown[key] = (state,)
                await server.write_attribute_value(
                    self._nodes[key], ua.DataValue(ua.Variant(state, ua.VariantType.String))
                )
        self.published += await self._anomalies.show(server, asset, snapshot["anomaly"], self.clock.now_ns())

    async def _write_desired(self, point: str, item: ua.WriteValue, user: User) -> ua.StatusCode:
        asset, _, name = point.partition("/")
        who = user.name
        self.writes += 1
        if who is None:
            self.writes_refused += 1
            logger.warning("OPC UA write to %s refused: anonymous sessions may not write", point)
            return status(StatusCodes.BadUserAccessDenied)
        if who in self._viewers:
            self.writes_refused += 1
            logger.warning("OPC UA write to %s by %s refused: the user's role is viewer", point, who)
            return status(StatusCodes.BadUserAccessDenied)
        raw = item.Value.Value.Value if item.Value is not None and item.Value.Value is not None else None
        value = desired_value(raw, self._points[point])
        if value is None:
            self.writes_refused += 1
            logger.warning("OPC UA write to %s by %s refused: %r is not a %s", point, who, raw,
                           self._points[point].type.value)  # fmt: skip
            return status(StatusCodes.BadTypeMismatch)
        try:
            desired, events = await self.twins.set_desired(asset, name, value, expected_version=None,
                                                           by=f"opcua:{who}")  # fmt: skip
        except NotWritable as exc:
            self.writes_refused += 1
            logger.warning("OPC UA write to %s by %s refused: %s", point, who, exc)
            return status(StatusCodes.BadNotWritable)
        except GatewayError as exc:
            self.writes_refused += 1
            logger.warning("OPC UA write to %s by %s refused: %s", point, who, exc)
            return status(StatusCodes.BadInvalidArgument)
        await self.record(events)
        if desired.status is WriteStatus.FAILED:
            self.writes_failed += 1
            logger.warning("OPC UA write to %s by %s failed at the device: %s", point, who, desired.reason)
            return status(StatusCodes.BadDeviceFailure)
        return status(StatusCodes.Good)

    async def _validate_client(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        paths = [str(p) for p in self.config.trusted_client_certificates]
        try:
            trusted = await asyncio.to_thread(pki.load_trusted, paths)
            await asyncio.to_thread(pki.check_server_certificate, der, trusted)
        except pki.PkiError:
            self.clients_refused += 1
            saved = await asyncio.to_thread(pki.reject, self.certificate_dir, der)
            logger.warning(
                "OPC UA client %s (%s) refused: its certificate %s is not trusted; saved to %s for review",
                app.ApplicationUri, app.ApplicationName.Text, pki.describe(der), saved,
            )  # fmt: skip
            raise ServiceError(StatusCodes.BadCertificateUntrusted) from None


__all__ = ["OpcUaServer"]
