"""An OPC UA server serving the pump plant, with faults that can be injected while it runs.

    async with OpcUaPlant(assets=("pump1",), tick=None) as server:
        ... server.endpoint, server.node_id("pump1", "flow") -> "ns=2;s=pump1.flow" ...
        await server.advance(1.0)                      # step the plant and publish its values
        await server.set_status("pump1", "flow", "BadSensorFailure")
        await server.restart()                         # same port; sessions and subscriptions lost

Address space (namespace ``urn:avila-edge:hil:pump-plant``, index 2): one object per asset
(``ns=2;s=<asset>``) holding the variables of ``VARIABLES`` as ``ns=2;s=<asset>.<name>``, each with
an ``EngineeringUnits`` property (UNECE codes) and, for analog values, an ``EURange``. The writable
``speed_setpoint`` and ``running`` change the plant at once.

Security: any of asyncua's endpoint policies (``NoSecurity``, ``Basic256Sha256_Sign``,
``Basic256Sha256_SignAndEncrypt``, ``Aes128Sha256RsaOaep_*``, ``Aes256Sha256RsaPss_*``, and the
deprecated ``Basic128Rsa15_*``/``Basic256_*`` when asked for), with a server certificate made by
``hil.certs``; user name + password logins when ``users`` is given (anonymous logins are then refused).

Faults: ``stop``/``start``/``restart`` (same port; sessions and subscriptions are gone, as after a
real restart), ``drop_connections`` (sockets closed, sessions kept, as after a broken cable),
``set_status`` (a variable reports Bad/Uncertain until ``clear_status``), ``write_value`` (one
value with a chosen status and timestamps). Counters: ``session_count``, ``subscription_count``,
``monitored_item_count``.

Imports nothing of the gateway: it stands in for a site's OPC UA server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, cast

from asyncua import ua
from asyncua.common.callback import CallbackService, ServerItemCallback
from asyncua.common.callback import CallbackType as ServerCallback
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

from hil.certs import CertPair, application_certificate
from hil.plant import PumpPlant

logger = logging.getLogger(__name__)

NAMESPACE_URI: Final = "urn:avila-edge:hil:pump-plant"
APPLICATION_URI: Final = "urn:avila-edge:hil:opcua-plant"
UNECE_UNITS: Final = "http://www.opcfoundation.org/UA/units/un/cefact"

MODERN_POLICIES: Final = (
    "NoSecurity",
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_Sign",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_Sign",
    "Aes256Sha256RsaPss_SignAndEncrypt",
)


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable of a pump: its OPC UA type, unit and where its value comes from."""

    name: str
    kind: ua.VariantType
    unit: str = ""
    unece: str = ""
    range: tuple[float, float] | None = None
    writable: bool = False


VARIABLES: Final = (
    Variable("flow", ua.VariantType.Double, "m³/h", "MQH", (0.0, 300.0)),
    Variable("pressure", ua.VariantType.Double, "bar", "BAR", (0.0, 16.0)),
    Variable("motor_temperature", ua.VariantType.Double, "°C", "CEL", (-20.0, 150.0)),
    Variable("vibration", ua.VariantType.Double, "mm/s", "C16", (0.0, 50.0)),
    Variable("current", ua.VariantType.Double, "A", "AMP", (0.0, 100.0)),
    Variable("speed", ua.VariantType.Double, "rpm", "RPM", (0.0, 3000.0)),
    Variable("power", ua.VariantType.Float, "kW", "KWT", (0.0, 100.0)),
    Variable("energy", ua.VariantType.Int64, "Wh", "WHR"),
    Variable("run_hours", ua.VariantType.Double, "h", "HUR"),
    Variable("speed_setpoint", ua.VariantType.Double, "rpm", "RPM", (0.0, 3000.0), writable=True),
    Variable("running", ua.VariantType.Boolean, writable=True),
    Variable("high_temperature", ua.VariantType.Boolean),
    Variable("high_vibration", ua.VariantType.Boolean),
    Variable("status_word", ua.VariantType.UInt16),
    Variable("name", ua.VariantType.String),
)
_BY_NAME: Final = {v.name: v for v in VARIABLES}


class _Users(UserManager):
    """asyncua user manager: a fixed table of user names and passwords."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self, iserver: InternalServer, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class OpcUaPlant:
    """``async with OpcUaPlant() as server`` serves pumps at ``server.endpoint`` on 127.0.0.1.

    ``tick`` seconds between automatic plant steps (``None``: the plant only moves on ``advance``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        assets: Sequence[str] = ("pump1",),
        policies: Sequence[str] = MODERN_POLICIES,
        users: Mapping[str, str] | None = None,
        certificate: CertPair | None = None,
        application_uri: str = APPLICATION_URI,
        tick: float | None = 0.5,
        seed: int = 1,
    ) -> None:
        self.host = host
        self.port = port
        self.assets = tuple(assets)
        self.policies = tuple(policies)
        self.users = dict(users) if users is not None else None
        self.application_uri = application_uri
        self.tick = tick
        self.plants = {asset: PumpPlant(seed=seed + i) for i, asset in enumerate(self.assets)}
        self.writes: list[tuple[str, str, Any]] = []
        self.namespace_index = 0
        self._certificate = certificate
        self._temp: Path | None = None
        self._server: Server | None = None
        self._nodes: dict[tuple[str, str], ua.NodeId] = {}
        self._status: dict[tuple[str, str], ua.StatusCode] = {}
        self._last_step = time.monotonic()
        self._started = False
        self._group: asyncio.TaskGroup | None = None
        self._ticker: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._build()
            await self.start()
            if self.tick is not None:
                self._group = asyncio.TaskGroup()
                await self._group.__aenter__()
                self._ticker = self._group.create_task(self._tick_loop(self.tick), name="hil[opcua].tick")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._group is not None:
            group, self._group = self._group, None
            await group.__aexit__(None, None, None)
        await self.stop()
        if self._server is not None:
            server, self._server = self._server, None
            server.bserver = None
            await server.stop()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    @property
    def server(self) -> Server:
        if self._server is None:
            raise RuntimeError("use the server as 'async with OpcUaPlant(...)'")
        return self._server

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/avila-edge/plant"

    @property
    def certificate(self) -> CertPair:
        """The server's certificate (DER) and key files."""
        if self._certificate is None:
            raise RuntimeError("the server has no certificate before it is started")
        return self._certificate

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.bserver is not None

    async def start(self) -> None:
        """Listen (again) on the same port."""
        server = self.server
        if server.bserver is not None:
            return
        if not self._started:
            await server.start()  # endpoints, policies, then the listener
            self._started = True
        else:
            bserver = BinaryServer(server.iserver, self.host, self.port, server.limits)
            bserver.set_policies(server._policies)
            await bserver.start()
            server.bserver = bserver
        assert server.bserver is not None
        self.port = int(server.bserver.port)
        server.socket_address = (self.host, self.port)
        logger.info("OPC UA plant serving %s at %s", ", ".join(self.assets), self.endpoint)

    async def stop(self) -> None:
        """Stop listening, drop every connection and forget every session (a server shutdown)."""
        server = self._server
        if server is None or server.bserver is None:
            return
        bserver, server.bserver = server.bserver, None
        await bserver.stop()
        for session in list(server.iserver._external_sessions.values()):
            await session.close_session(True)
        for sub_id in list(server.iserver.subscription_service.subscriptions):
            await server.iserver.subscription_service.delete_subscriptions([sub_id])

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def drop_connections(self) -> None:
        """Close every client socket but keep sessions and subscriptions (a broken cable)."""
        for transport in list(self.server.iserver.asyncio_transports):
            transport.close()

    # -- address space ----------------------------------------------------------------------------

    async def _build(self) -> None:
        server = Server(user_manager=_Users(self.users) if self.users is not None else None)
        self._server = server
        await server.init()
        server.disable_clock()
        server.set_server_name("avila-edge hil pump plant")
        await server.set_application_uri(self.application_uri)
        server.set_endpoint(self.endpoint)
        server.socket_address = (self.host, self.port)
        kinds = [ua.SecurityPolicyType[name] for name in self.policies]
        server.set_security_policy(kinds)
        if any(k is not ua.SecurityPolicyType.NoSecurity for k in kinds):
            if self._certificate is None:
                self._temp = Path(tempfile.mkdtemp(prefix="hil-opcua-"))
                hosts = ("localhost", self.host, socket.gethostname())
                self._certificate = await asyncio.to_thread(
                    application_certificate, self._temp, "hil pump plant", self.application_uri, hosts=hosts
                )
            await server.load_certificate(str(self._certificate.cert))
            await server.load_private_key(str(self._certificate.key))
        if self.users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        self.namespace_index = await server.register_namespace(NAMESPACE_URI)
        ns = self.namespace_index
        for asset in self.assets:
            folder = await server.nodes.objects.add_object(
                ua.NodeId(ua.String(asset), ua.Int16(ns)), ua.QualifiedName(asset, ns)
            )
            for var in VARIABLES:
                node_id = ua.NodeId(ua.String(f"{asset}.{var.name}"), ua.Int16(ns))
                node = await folder.add_variable(
                    node_id, ua.QualifiedName(var.name, ns), ua.Variant(_initial(var.kind), var.kind)
                )
                if var.unit:
                    eu = ua.EUInformation(
                        NamespaceUri=UNECE_UNITS,
                        UnitId=_unece_id(var.unece),
                        DisplayName=ua.LocalizedText(var.unit),
                        Description=ua.LocalizedText(var.unit),
                    )
                    await node.add_property(0, "EngineeringUnits", eu)
                if var.range is not None:
                    await node.add_property(0, "EURange", ua.Range(Low=var.range[0], High=var.range[1]))
                if var.writable:
                    await node.set_writable(True)
                self._nodes[(asset, var.name)] = node_id
        server.subscribe_server_callback(ServerCallback.PostWrite, self._on_write)
        self._last_step = time.monotonic()
        await self.publish()

    def node_id(self, asset: str, name: str) -> str:
        """The NodeId string of one variable, e.g. ``ns=2;s=pump1.flow``."""
        return str(self._node(asset, name).to_string())

    def _node(self, asset: str, name: str) -> ua.NodeId:
        try:
            return self._nodes[(asset, name)]
        except KeyError:
            raise KeyError(f"no variable {name!r} on asset {asset!r}") from None

    # -- values -----------------------------------------------------------------------------------

    async def _tick_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for plant in self.plants.values():
                plant.step(now - self._last_step)
            self._last_step = now
            await self.publish()

    async def advance(self, seconds: float) -> None:
        """Step every plant by ``seconds`` (plant time) and publish the new values."""
        for plant in self.plants.values():
            plant.step(seconds)
        await self.publish()

    async def publish(self) -> None:
        """Write every variable from its plant (a variable under ``set_status`` keeps its status)."""
        now = dt.datetime.now(dt.UTC)
        for asset, plant in self.plants.items():
            values = self.values_of(asset, plant)
            for var in VARIABLES:
                status = self._status.get((asset, var.name))
                await self._write(asset, var, values[var.name], status, now)

    @staticmethod
    def values_of(asset: str, plant: PumpPlant) -> dict[str, Any]:
        values: dict[str, Any] = dict(plant.values())
        values["energy"] = round(values["energy"])
        values["speed_setpoint"] = plant.speed_setpoint
        values["running"] = plant.running
        values["high_temperature"] = plant.high_temperature
        values["high_vibration"] = plant.high_vibration
        values["status_word"] = plant.running | plant.high_temperature << 1 | plant.high_vibration << 2
        values["name"] = f"PUMP {asset.upper()}"
        return values

    async def _write(
        self,
        asset: str,
        var: Variable,
        value: Any,
        status: ua.StatusCode | None,
        source: dt.datetime | None,
        server_ts: dt.datetime | None = None,
    ) -> None:
        variant = ua.Variant(value, var.kind)
        dv = ua.DataValue(
            Value=variant,
            StatusCode=status if status is not None else ua.StatusCode(ua.UInt32(StatusCodes.Good)),
            SourceTimestamp=cast(ua.DateTime | None, source),
            ServerTimestamp=cast(ua.DateTime, server_ts or dt.datetime.now(dt.UTC)),
        )
        await self.server.write_attribute_value(self._node(asset, var.name), dv)

    async def write_value(
        self,
        asset: str,
        name: str,
        value: Any,
        *,
        status: str | int = "Good",
        source_timestamp: dt.datetime | None = None,
        server_timestamp: dt.datetime | None = None,
        kind: ua.VariantType | None = None,
    ) -> None:
        """Publish one value of one variable as given (``kind`` overrides the variable's type)."""
        var = _BY_NAME[name]
        if kind is not None:
            var = Variable(var.name, kind)
        await self._write(asset, var, value, _status(status), source_timestamp, server_timestamp)

    async def set_status(self, asset: str, name: str, status: str | int) -> None:
        """Make a variable report ``status`` (e.g. ``BadSensorFailure``) until ``clear_status``."""
        self._node(asset, name)
        self._status[(asset, name)] = _status(status)
        await self.publish()

    async def clear_status(self, asset: str | None = None, name: str | None = None) -> None:
        for key in list(self._status):
            if (asset is None or key[0] == asset) and (name is None or key[1] == name):
                del self._status[key]
        await self.publish()

    async def read(self, asset: str, name: str) -> Any:
        return await self.server.get_node(self._node(asset, name)).read_value()

    async def _on_write(self, event: ServerItemCallback, _dispatcher: CallbackService) -> None:
        """Apply a client's write of a setpoint or the run command to the plant."""
        params: ua.WriteParameters = event.request_params
        results: list[ua.StatusCode] = event.response_params or []
        for item, result in zip(params.NodesToWrite, results, strict=False):
            if not result.is_good() or item.AttributeId != AttributeIds.Value:
                continue
            for (asset, name), node_id in self._nodes.items():
                if node_id != item.NodeId:
                    continue
                value = item.Value.Value.Value if item.Value.Value is not None else None
                self.writes.append((asset, name, value))
                if name == "speed_setpoint":
                    self.plants[asset].set_speed(float(value or 0.0))
                elif name == "running":
                    self.plants[asset].set_running(bool(value))

    # -- counters ---------------------------------------------------------------------------------

    def session_count(self) -> int:
        return len(self.server.iserver._external_sessions)

    def subscription_count(self) -> int:
        return len(self.server.iserver.subscription_service.subscriptions)

    def deadband_filters(self) -> dict[str, tuple[str, float]]:
        """The deadband each monitored node was asked for, by node id text: ("Absolute" | "Percent",
        value). asyncua applies Absolute only (Percent passes every change), so tests read the request."""
        out: dict[str, tuple[str, float]] = {}
        for sub in self.server.iserver.subscription_service.subscriptions.values():
            for item in sub.monitored_item_srv._monitored_items.values():
                flt = item.filter  # a DataChangeFilter, of whichever class the decoder registered
                if hasattr(flt, "DeadbandType") and item.read_value_id is not None:
                    kind = ua.DeadbandType(flt.DeadbandType).name
                    out[item.read_value_id.NodeId.to_string()] = (kind, float(flt.DeadbandValue))
        return out

    def monitored_item_count(self) -> int:
        return sum(
            len(sub.monitored_item_srv._monitored_items)
            for sub in self.server.iserver.subscription_service.subscriptions.values()
        )


def _status(status: str | int) -> ua.StatusCode:
    if isinstance(status, int):
        return ua.StatusCode(ua.UInt32(status))
    return ua.StatusCode(ua.UInt32(getattr(StatusCodes, status)))


def _initial(kind: ua.VariantType) -> Any:
    if kind is ua.VariantType.Boolean:
        return False
    if kind is ua.VariantType.String:
        return ""
    if kind in (ua.VariantType.Double, ua.VariantType.Float):
        return 0.0
    return 0


def _unece_id(code: str) -> int:
    """The OPC UA UnitId of a UNECE common code (its letters packed into an integer)."""
    value = 0
    for ch in code:
        value = value << 8 | ord(ch)
    return value


async def _serve(args: argparse.Namespace) -> None:
    users = dict(u.split(":", 1) for u in args.user) if args.user else None
    policies = tuple(args.policy) if args.policy else MODERN_POLICIES
    assets = tuple(a for a in args.assets.split(",") if a)
    async with OpcUaPlant(
        host=args.host, port=args.port, assets=assets, policies=policies, users=users, tick=args.tick
    ) as server:
        for plant in server.plants.values():
            plant.degrade_bearing(args.bearing_wear)
        print(
            f"OPC UA plant: {server.endpoint} (namespace {NAMESPACE_URI}, index {server.namespace_index})", flush=True
        )
        if server.running and any(p != "NoSecurity" for p in policies):
            print(f"server certificate: {server.certificate.cert} sha256 {server.certificate.fingerprint}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of the OPC UA plant (shared by ``python -m hil opcua-server``)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--assets", default="pump1", help="comma-separated asset ids, one pump each")
    parser.add_argument(
        "--policy",
        action="append",
        help=f"endpoint policy, repeatable (default: {', '.join(MODERN_POLICIES)})",
    )
    parser.add_argument("--user", action="append", help="name:password of a user allowed to log in, repeatable")
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between plant steps")
    parser.add_argument("--bearing-wear", type=float, default=0.0, help="bearing wear per hour (1.0 = failure)")


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.opcua_server", description="serve the pump plant over OPC UA")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
