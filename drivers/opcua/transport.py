"""The only module that speaks asyncua: one session at a time, library errors translated.

``UaTransport.connect()`` is an async context manager yielding a connected ``Link``; leaving it
ends the session. Every failure leaves as ``LinkDown`` (refused, unreachable, connection or
keep-alive lost), ``Timeout`` (no answer in time), ``ProtocolViolation`` (a reply that cannot be
read) or ``DeviceRejected`` (a Bad status from the server, a refused login, an untrusted server
certificate), naming the device, the endpoint and the operation. Passwords never appear in
messages or logs.

Sessions: when a link breaks without the session being closed, the next connect resumes that
session on a new secure channel (OPC UA Part 4 §6.7, through asyncua's persisted session state)
and deletes its old subscriptions before subscribing again, so the server never holds two copies
of the gateway's monitored items. After a server restart the old session is gone and a new one
is made. A link that is closed on purpose closes its session, which deletes its subscriptions.

Liveness: asyncua reads the server state every ``timeout / 2`` seconds with a deadline of
``timeout / 2`` and reports a missed answer as a lost connection; a subscription that stays silent
(no data, no keep-alive) for three keep-alive periods is a lost link too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import BadTimeout, UaError, UaStatusCodeError

from avila_edge.config.secrets import SecretUnreadable, read_secret_file
from avila_edge.core import DeviceRejected, DriverError, LinkDown, ProtocolViolation, Timeout
from drivers.opcua import pki
from drivers.opcua.codec import NodeRef, Sample, datetime_to_ns
from drivers.opcua.config import DEPRECATED_POLICIES, POLICY_URIS, OpcUaConnection

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

MAX_BATCH: Final = 10_000
"""Notifications handed to the driver at most per ``receive``."""
QUEUE_DEPTH: Final = 64
"""Publish responses waiting for the driver; beyond that the publish loop waits (server-side queues fill)."""
ITEMS_PER_REQUEST: Final = 1000
KEEPALIVE_SECONDS: Final = 5.0
"""A subscription with nothing to report still answers a publish request this often."""

_POLICY_CLASSES: Final[dict[str, type[security_policies.SecurityPolicy]]] = {
    "basic256sha256": security_policies.SecurityPolicyBasic256Sha256,
    "aes128_sha256_rsaoaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "aes256_sha256_rsapss": security_policies.SecurityPolicyAes256Sha256RsaPss,
    "basic128rsa15": security_policies.SecurityPolicyBasic128Rsa15,
    "basic256": security_policies.SecurityPolicyBasic256,
}
_MODES: Final = {
    "none": ua.MessageSecurityMode.None_,
    "sign": ua.MessageSecurityMode.Sign,
    "sign_and_encrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_LOGIN_REFUSED: Final = frozenset(
    {
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadIdentityTokenInvalid,
        StatusCodes.BadIdentityTokenRejected,
    }
)
_LOST: Final = object()


@dataclass(frozen=True, slots=True)
class MonitoredPoint:
    """One monitored item to create: ``handle`` comes back with every notification of the node."""

    handle: int
    node: NodeRef
    sampling_interval: float | None
    queue_size: int
    deadband_abs: float | None = None
    deadband_percent: float | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionPlan:
    """Monitored items that share one publishing interval (seconds)."""

    publishing_interval: float
    points: tuple[MonitoredPoint, ...]


class Link(Protocol):
    """A connected session."""

    resumed: bool

    async def subscribe(self, plans: Sequence[SubscriptionPlan]) -> dict[int, str]:
        """Create the subscriptions; returns ``{handle: reason}`` for every item the server refused."""
        ...

    async def receive(self) -> list[Sample]:
        """The next notifications (waits for at least one; raises ``LinkDown`` when the link is lost)."""
        ...

    async def builtin_type(self, node: NodeRef) -> str:
        """The built-in type name (``Double``, ``UInt16`` ...) values of ``node`` are written as."""
        ...

    async def write(self, node: NodeRef, value: bool | int | float | str, builtin: str) -> None: ...


class Transport(Protocol):
    endpoint: str

    def connect(self) -> contextlib.AbstractAsyncContextManager[Link]: ...

    def close(self) -> None: ...


class UaTransport:
    """Sessions with one OPC UA server, as configured by ``OpcUaConnection``."""

    def __init__(self, device: str, conn: OpcUaConnection, *, timeout: float, hostname: str | None = None) -> None:
        self.device = device
        self.conn = conn
        self.timeout = timeout
        self.endpoint = conn.endpoint
        self.hostname = hostname or socket.gethostname()
        self.application_uri = conn.application_uri or pki.default_application_uri(self.hostname)
        self._state_dir: Path | None = None
        self._last_token: ua.NodeId | None = None
        self._last_subscriptions: list[int] = []

    def close(self) -> None:
        """Forget the persisted session state (the driver is done)."""
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        client = await self._open()
        link = _UaLink(self, client)
        try:
            await link.start()
            yield link
        finally:
            await link.close()

    # -- connecting -------------------------------------------------------------------------------

    async def _open(self) -> Client:
        what = f"connect {self.endpoint}"
        c = self.conn
        password = await asyncio.to_thread(self._password) if c.password_file is not None else None
        client = Client(self.endpoint, timeout=self.timeout, watchdog_intervall=max(self.timeout / 2, 0.05))
        client.application_uri = self.application_uri
        client.product_uri = "urn:avila-edge"
        client.name = client.description = f"avila-edge {self.device}"
        client.session_timeout = max(1000, round(c.session_timeout * 1000))
        client.session_state_path = self._session_file()
        if c.username is not None:
            client.set_user(c.username)
            if password is not None:
                client.set_password(password)
        if c.security_mode != "none":
            await self._secure(client)
        try:
            async with asyncio.timeout(max(10 * self.timeout, 5.0)):
                await client.connect()
        except DriverError:
            raise
        except Exception as exc:
            await _discard(client, self.timeout)
            raise _translate(exc, self.device, what, self.timeout) from exc
        return client

    async def _secure(self, client: Client) -> None:
        c = self.conn
        what = f"connect {self.endpoint}"
        if c.security_policy in DEPRECATED_POLICIES and not c.allow_deprecated_policies:
            raise DeviceRejected(
                self.device,
                what,
                f"security policy {c.security_policy} is deprecated (SHA-1) and refused;"
                " set allow_deprecated_policies: true to use it anyway",
            )
        if not c.certificate_dir:
            raise LinkDown(self.device, what, f"security_mode {c.security_mode} needs a certificate_dir")
        folder = Path(c.certificate_dir)
        try:
            identity = await asyncio.to_thread(
                pki.ensure_client_certificate, folder, self.application_uri, hostname=self.hostname
            )
            trusted = await asyncio.to_thread(pki.load_trusted, c.trusted_server_certificates)
        except (pki.PkiError, OSError) as exc:
            raise LinkDown(self.device, what, f"cannot use the certificates: {exc}") from exc
        mode = _MODES[c.security_mode]
        policy_uri = POLICY_URIS[c.security_policy]
        try:
            async with asyncio.timeout(max(4 * self.timeout, 2.0)):
                endpoints = await client.connect_and_get_server_endpoints()
        except Exception as exc:
            _abandon(client)
            raise _translate(exc, self.device, f"discover endpoints at {self.endpoint}", self.timeout) from exc
        chosen = next((e for e in endpoints if e.SecurityMode == mode and e.SecurityPolicyUri == policy_uri), None)
        if chosen is None:
            offered = sorted({f"{_policy_name(e.SecurityPolicyUri)}/{_mode_name(e.SecurityMode)}" for e in endpoints})
            raise DeviceRejected(
                self.device,
                what,
                f"the server offers no {c.security_policy}/{c.security_mode} endpoint (it offers {', '.join(offered)})",
            )
        server_der = _first_certificate(chosen.ServerCertificate or b"")
        try:
            await asyncio.to_thread(pki.check_server_certificate, server_der, trusted)
        except pki.PkiError as exc:
            saved = await asyncio.to_thread(pki.reject, folder, server_der) if server_der else None
            hint = f"; it was saved to {saved} — if it is the right server, add it to trusted_server_certificates"
            raise DeviceRejected(self.device, what, f"{exc}{hint if saved else ''}") from exc
        try:
            await client.set_security(
                _POLICY_CLASSES[c.security_policy],
                certificate=str(identity.cert_path),
                private_key=str(identity.key_path),
                server_certificate=server_der,
                mode=mode,
            )
        except Exception as exc:
            raise LinkDown(self.device, what, f"cannot set up {c.security_policy} security: {exc}") from exc

    def _password(self) -> str:
        path = self.conn.password_file
        assert path is not None
        try:
            return read_secret_file(path).rstrip("\r\n")
        except SecretUnreadable as exc:
            raise LinkDown(
                self.device, f"connect {self.endpoint}", f"cannot read password_file {path}: {exc.detail}"
            ) from exc

    def _session_file(self) -> Path:
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="avila-edge-opcua-"))
        return self._state_dir / "session.json"


class _UaLink:
    """One live session: subscriptions, notifications, writes."""

    def __init__(self, transport: UaTransport, client: Client) -> None:
        self._t = transport
        self._client = client
        self._queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_DEPTH)
        self._lost: str | None = None
        self._closing = False
        self._subscriptions: list[int] = []
        self._namespaces: list[str] = []
        self._stale_after = 3 * KEEPALIVE_SECONDS + 2 * transport.timeout
        self.resumed = False

    @property
    def _device(self) -> str:
        return self._t.device

    async def start(self) -> None:
        t = self._t
        self._client.connection_lost_callback = self._on_lost
        token = self._client.uaclient.session.authentication_token
        self.resumed = t._last_token is not None and not token.is_null() and token == t._last_token
        t._last_token = token
        old, t._last_subscriptions = t._last_subscriptions, []
        if self.resumed and old:
            # the session outlived the broken link: its subscriptions must go before new ones come
            with contextlib.suppress(Exception):
                async with asyncio.timeout(t.timeout):
                    await self._client.uaclient.delete_subscriptions(old)
            logger.info("%s: resumed session at %s, deleted %d old subscription(s)", t.device, t.endpoint, len(old))
        self._namespaces = await self._call(self._client.get_namespace_array(), "read the namespace array")

    async def close(self) -> None:
        self._closing = True
        while not self._queue.empty():  # a publish loop blocked on a full queue may finish
            self._queue.get_nowait()
        t = self._t
        t._last_subscriptions = list(self._subscriptions)
        if self._lost is None:
            # a healthy link: close the session, which deletes its subscriptions on the server
            try:
                async with asyncio.timeout(t.timeout):
                    await self._client.disconnect()
            except Exception:  # noqa: S110 - the link broke meanwhile: abandon it below
                pass
            else:
                t._last_token = None
                t._last_subscriptions = []
                return
        # a broken link: drop the socket and stop the client's tasks, keeping the session (and the
        # state asyncua persisted for it) so that the next connect resumes it and deletes its subscriptions
        await _discard(self._client, t.timeout)

    async def _on_lost(self, exc: Exception) -> None:
        if self._closing:
            return
        self._lost = _describe_loss(exc, self._t.timeout)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_LOST)

    async def _on_publish(self, result: ua.PublishResult) -> None:
        if not self._closing:
            await self._queue.put(result)  # a full queue holds the publish loop back: the server queues

    # -- subscriptions ----------------------------------------------------------------------------

    async def subscribe(self, plans: Sequence[SubscriptionPlan]) -> dict[int, str]:
        refused: dict[int, str] = {}
        session = self._client.uaclient.session
        for plan in plans:
            interval_ms = plan.publishing_interval * 1000
            keepalive = max(1, math.ceil(KEEPALIVE_SECONDS / max(plan.publishing_interval, 0.001)))
            lifetime = max(
                3 * keepalive, math.ceil(self._t.conn.session_timeout / max(plan.publishing_interval, 0.001))
            )
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=interval_ms,
                RequestedLifetimeCount=lifetime,
                RequestedMaxKeepAliveCount=keepalive,
                MaxNotificationsPerPublish=MAX_BATCH,
                PublishingEnabled=True,
                Priority=0,
            )
            what = f"create a subscription ({plan.publishing_interval:g} s)"
            result = await self._call(session.create_subscription(params, self._on_publish), what)
            sub_id = int(result.SubscriptionId)
            self._subscriptions.append(sub_id)
            self._t._last_subscriptions = list(self._subscriptions)
            revised = result.RevisedMaxKeepAliveCount * result.RevisedPublishingInterval / 1000
            self._stale_after = max(self._stale_after, 3 * revised + 2 * self._t.timeout)
            for start in range(0, len(plan.points), ITEMS_PER_REQUEST):
                chunk = plan.points[start : start + ITEMS_PER_REQUEST]
                refused.update(await self._monitor(sub_id, chunk))
        return refused

    async def _monitor(self, sub_id: int, points: Sequence[MonitoredPoint]) -> dict[int, str]:
        refused: dict[int, str] = {}
        requests: list[ua.MonitoredItemCreateRequest] = []
        asked: list[MonitoredPoint] = []
        for p in points:
            try:
                node_id = self._resolve(p.node)
            except LookupError as exc:
                refused[p.handle] = f"BadNodeIdUnknown ({exc})"
                continue
            mparams = ua.MonitoringParameters(
                ClientHandle=p.handle,
                SamplingInterval=-1.0 if p.sampling_interval is None else p.sampling_interval * 1000,
                QueueSize=p.queue_size,
                DiscardOldest=True,
            )
            if p.deadband_abs is not None or p.deadband_percent is not None:
                absolute = p.deadband_abs is not None
                mparams.Filter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=ua.DeadbandType.Absolute if absolute else ua.DeadbandType.Percent,
                    DeadbandValue=float((p.deadband_abs if absolute else p.deadband_percent) or 0.0),
                )
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=mparams,
                )
            )
            asked.append(p)
        if not requests:
            return refused
        params = ua.CreateMonitoredItemsParameters(
            SubscriptionId=sub_id, ItemsToCreate=requests, TimestampsToReturn=ua.TimestampsToReturn.Both
        )
        results = await self._call(
            self._client.uaclient.create_monitored_items(params), f"monitor {len(requests)} node(s)"
        )
        for p, res in zip(asked, results, strict=False):
            if not res.StatusCode.is_good():
                refused[p.handle] = _status_name(res.StatusCode.value)
        return refused

    def _resolve(self, node: NodeRef) -> ua.NodeId:
        if node.namespace_uri is not None:
            try:
                index = self._namespaces.index(node.namespace_uri)
            except ValueError:
                raise LookupError(f"the server has no namespace {node.namespace_uri}") from None
            node = node.with_namespace(index)
        return ua.NodeId.from_string(str(node))

    # -- notifications ----------------------------------------------------------------------------

    async def receive(self) -> list[Sample]:
        while True:
            if self._lost is not None:
                raise LinkDown(self._device, f"receive from {self._t.endpoint}", self._lost)
            try:
                async with asyncio.timeout(self._stale_after if self._subscriptions else None):
                    item = await self._queue.get()
            except TimeoutError:
                self._lost = f"no data or keep-alive for {self._stale_after:.0f} s"
                continue
            samples: list[Sample] = []
            while True:
                if item is not _LOST:
                    samples.extend(self._samples(item))
                if len(samples) >= MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if samples:
                return samples

    def _samples(self, result: ua.PublishResult) -> list[Sample]:
        out: list[Sample] = []
        for notification in result.NotificationMessage.NotificationData or ():
            if isinstance(notification, ua.DataChangeNotification):
                for item in notification.MonitoredItems:
                    out.append(_sample(item))
            elif isinstance(notification, ua.StatusChangeNotification):
                status = notification.Status
                if status is not None and not status.is_good() and self._lost is None:
                    name = _status_name(status.value)
                    self._lost = (
                        "connection lost" if name == "BadShutdown" else f"subscription {result.SubscriptionId}: {name}"
                    )
        return out

    # -- writes -----------------------------------------------------------------------------------

    async def builtin_type(self, node: NodeRef) -> str:
        what = f"read the data type of {node}"
        node_id = self._resolve_or_reject(node, what)
        uaclient = self._client.uaclient
        (dv,) = await self._call(uaclient.read_attributes([node_id], AttributeIds.DataType), what)
        _check(dv.StatusCode, self._device, what)
        data_type = dv.Value.Value if dv.Value is not None else None
        if (
            isinstance(data_type, ua.NodeId)
            and data_type.NamespaceIndex == 0
            and isinstance(data_type.Identifier, int)
            and 1 <= data_type.Identifier <= 25
        ):
            return ua.VariantType(data_type.Identifier).name
        # a derived or enumerated type: take the type of the value the node holds now
        (current,) = await self._call(uaclient.read_attributes([node_id], AttributeIds.Value), what)
        _check(current.StatusCode, self._device, what)
        if current.Value is None or current.Value.VariantType is ua.VariantType.Null:
            raise DeviceRejected(self._device, what, f"the node's data type {data_type} is not a built-in type")
        return str(current.Value.VariantType.name)

    async def write(self, node: NodeRef, value: bool | int | float | str, builtin: str) -> None:
        what = f"write {node}"
        node_id = self._resolve_or_reject(node, what)
        dv = ua.DataValue(Value=ua.Variant(value, ua.VariantType[builtin]))
        params = ua.WriteParameters(
            NodesToWrite=[ua.WriteValue(NodeId=node_id, AttributeId=AttributeIds.Value, Value=dv)]
        )
        (status,) = await self._call(self._client.uaclient.write(params), what)
        _check(status, self._device, what)

    def _resolve_or_reject(self, node: NodeRef, what: str) -> ua.NodeId:
        try:
            return self._resolve(node)
        except LookupError as exc:
            raise DeviceRejected(self._device, what, f"BadNodeIdUnknown: {exc}") from exc

    async def _call(self, request: Awaitable[_T], what: str) -> _T:
        try:
            async with asyncio.timeout(self._t.timeout * 2):
                return await request
        except Exception as exc:
            raise _translate(exc, self._device, f"{what} at {self._t.endpoint}", self._t.timeout) from exc


def _sample(item: ua.MonitoredItemNotification) -> Sample:
    dv = item.Value
    variant = dv.Value if dv is not None else None
    status = dv.StatusCode.value if dv is not None and dv.StatusCode is not None else 0
    return Sample(
        handle=int(item.ClientHandle),
        value=_plain(variant.Value) if variant is not None else None,
        variant=variant.VariantType.name if variant is not None else "Null",
        status=status,
        status_name=_status_name(status),
        source_ns=datetime_to_ns(dv.SourceTimestamp) if dv is not None else None,
        server_ns=datetime_to_ns(dv.ServerTimestamp) if dv is not None else None,
    )


def _plain(value: Any) -> Any:
    """Library value objects as plain Python values (the codec knows only those)."""
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, ua.NodeId | ua.QualifiedName):
        return value.to_string()
    if isinstance(value, ua.StatusCode):
        return _status_name(value.value)
    return value


def _status_name(code: int) -> str:
    try:
        return str(ua.StatusCode(ua.UInt32(code)).name)
    except Exception:  # an unknown code
        return f"0x{code:08X}"


def _check(status: ua.StatusCode | None, device: str, what: str) -> None:
    if status is not None and not status.is_good():
        raise DeviceRejected(device, what, _status_name(status.value))


def _translate(exc: BaseException, device: str, what: str, timeout: float) -> DriverError:
    """A library error as one of the gateway's driver errors."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, TimeoutError | BadTimeout):
        return Timeout(device, what, f"no answer within {timeout:g} s")
    if isinstance(exc, UaStatusCodeError):
        code = int(exc.code)
        name = _status_name(code)
        if code in _LOGIN_REFUSED:
            return DeviceRejected(device, what, f"the server refused the login: {name}")
        if name.startswith(("BadCertificate", "BadSecurity")):
            return DeviceRejected(
                device, what, f"the server refused the gateway's certificate ({name}); it must trust it"
            )
        return DeviceRejected(device, what, name)
    if isinstance(exc, ConnectionRefusedError):
        return LinkDown(device, what, "connection refused")
    if isinstance(exc, ConnectionError | OSError):
        return LinkDown(device, what, str(exc) or type(exc).__name__)
    if isinstance(exc, UaError) and "certificate mismatch" in str(exc).lower():
        return DeviceRejected(device, what, "the server presented another certificate than at discovery")
    return ProtocolViolation(device, what, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _describe_loss(exc: Exception, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"the server did not answer the keep-alive within {timeout / 2:g} s"
    return f"connection lost ({exc})" if str(exc) else "connection lost"


async def _discard(client: Client, deadline: float) -> None:
    """Drop the socket, then stop the client's background tasks (no request reaches the server)."""
    _abandon(client)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(deadline):
            await client.close_session()


def _abandon(client: Client) -> None:
    """Drop the socket of a client whose session cannot be closed (even if asyncua already marked it lost)."""
    protocol = client.uaclient.protocol
    with contextlib.suppress(Exception):
        if protocol is not None:
            protocol.disconnect_socket()
        client.disconnect_socket()


def _first_certificate(der: bytes) -> bytes:
    """The leaf of a certificate chain sent as concatenated DER certificates."""
    if len(der) < 4 or der[0] != 0x30:
        return der
    if der[1] == 0x82:
        return der[: int.from_bytes(der[2:4], "big") + 4]
    if der[1] == 0x81:
        return der[: der[2] + 3]
    return der


def _policy_name(uri: str) -> str:
    for name, known in POLICY_URIS.items():
        if known == uri:
            return name
    return "none" if uri.endswith("#None") else uri.rsplit("#", 1)[-1]


def _mode_name(mode: ua.MessageSecurityMode) -> str:
    for name, known in _MODES.items():
        if known == mode:
            return name
    return str(mode)


__all__ = ["Link", "MonitoredPoint", "SubscriptionPlan", "Transport", "UaTransport"]
