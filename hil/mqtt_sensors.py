"""MQTT devices serving the pump plant: a sensor fleet (JSON and plain-number payloads) and a
Sparkplug B edge node (NBIRTH/DBIRTH/NDATA/DDATA/DDEATH/NDEATH with bdSeq and seq, answering
rebirth NCMDs and speed-setpoint DCMDs), with faults to inject while they run.

Topics of the fleet (one plant per asset):
  <prefix>/<asset>/<value>         JSON {"v": 12.3, "ts": <epoch ms>}
  <number_prefix>/<asset>/<value>  plain text "12.3"
Values: flow, pressure, motor_temperature, vibration, current, speed, power (see hil/plant.py).

The Sparkplug node ``<group>/<node>`` has one device per asset with Double metrics of the same
names, a Boolean ``running`` and a writable Double ``speed_setpoint``; its node metrics are
``bdSeq``, ``Node Control/Rebirth`` and ``uptime``.

Imports nothing of the gateway: it stands in for real devices. Sparkplug payloads are written with
the small protobuf writer below, independent of the gateway's reader.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Self

import aiomqtt

from hil.plant import PumpPlant

logger = logging.getLogger(__name__)

VALUES: Final = ("flow", "pressure", "motor_temperature", "vibration", "current", "speed", "power")

# Sparkplug B data types used here
INT64, UINT64, DOUBLE, BOOLEAN, STRING = 4, 8, 10, 11, 12


def _plants(assets: Mapping[str, PumpPlant] | Sequence[str]) -> dict[str, PumpPlant]:
    if isinstance(assets, Mapping):
        return dict(assets)
    return {name: PumpPlant(seed=i + 1) for i, name in enumerate(assets)}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- sensor fleet --------------------------------------------------------------------------------


class SensorFleet:
    """Pumps publishing their values as JSON and as plain numbers, one message per value."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        assets: Mapping[str, PumpPlant] | Sequence[str] = ("pump1",),
        prefix: str = "plant",
        number_prefix: str = "plant-raw",
        qos: int = 1,
        client_id: str | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.host = host
        self.port = port
        self.plants = _plants(assets)
        self.prefix = prefix
        self.number_prefix = number_prefix
        self.qos = qos
        self.client_id = client_id or f"hil-fleet-{id(self):x}"
        self.clock_ms = clock_ms
        self.published = 0
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Self:
        self._client = aiomqtt.Client(self.host, self.port, identifier=self.client_id)
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(exc_type, exc, tb)

    @property
    def client(self) -> aiomqtt.Client:
        if self._client is None:
            raise RuntimeError("use the fleet as 'async with SensorFleet(...)'")
        return self._client

    async def publish_once(self, dt: float = 1.0) -> int:
        """Step every plant by ``dt`` s and publish each value in both formats; returns the count."""
        ts = self.clock_ms()
        count = 0
        for asset, plant in self.plants.items():
            plant.step(dt)
            values = plant.values()
            for name in VALUES:
                value = round(values[name], 4)
                body = f'{{"v": {value!r}, "ts": {ts}}}'.encode()
                await self.client.publish(f"{self.prefix}/{asset}/{name}", body, qos=self.qos)
                await self.client.publish(f"{self.number_prefix}/{asset}/{name}", repr(value).encode(), qos=self.qos)
                count += 2
        self.published += count
        return count

    async def publish_raw(self, topic: str, payload: bytes, qos: int | None = None) -> None:
        """Publish any payload (fault injection: malformed, oversize ...)."""
        await self.client.publish(topic, payload, qos=self.qos if qos is None else qos)

    async def run(self, interval: float, *, count: int | None = None) -> None:
        """Publish every ``interval`` s (``count`` rounds, or until cancelled)."""
        done = 0
        while count is None or done < count:
            await self.publish_once(interval)
            done += 1
            await asyncio.sleep(interval)


# -- a minimal protobuf writer/reader for Sparkplug B --------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire: int, body: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 2:
        return key + _varint(len(body)) + body
    return key + body


def metric_bytes(
    *,
    datatype: int,
    value: float | int | bool | str | None,
    name: str | None = None,
    alias: int | None = None,
    timestamp: int | None = None,
) -> bytes:
    """One Sparkplug ``Metric`` message."""
    out = b""
    if name is not None:
        out += _field(1, 2, name.encode())
    if alias is not None:
        out += _field(2, 0, _varint(alias))
    if timestamp is not None:
        out += _field(3, 0, _varint(timestamp))
    out += _field(4, 0, _varint(datatype))
    if value is None:
        return out + _field(7, 0, b"\x01")
    if datatype == DOUBLE:
        return out + _field(13, 1, struct.pack("<d", float(value)))
    if datatype == BOOLEAN:
        return out + _field(14, 0, b"\x01" if value else b"\x00")
    if datatype == STRING:
        return out + _field(15, 2, str(value).encode())
    return out + _field(11, 0, _varint(int(value)))


def payload_bytes(metrics: Sequence[bytes], *, seq: int | None, timestamp: int | None = None) -> bytes:
    """One Sparkplug ``Payload`` message."""
    out = _field(1, 0, _varint(timestamp if timestamp is not None else _now_ms()))
    for m in metrics:
        out += _field(2, 2, m)
    if seq is not None:
        out += _field(3, 0, _varint(seq))
    return out


def _read_fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, wire, varint()))
        elif wire == 1:
            out.append((number, wire, data[pos : pos + 8]))
            pos += 8
        elif wire == 2:
            size = varint()
            out.append((number, wire, data[pos : pos + size]))
            pos += size
        elif wire == 5:
            out.append((number, wire, data[pos : pos + 4]))
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def command_metrics(payload: bytes) -> dict[str, float | int | bool | str]:
    """The (name -> value) metrics of an NCMD/DCMD payload."""
    metrics: dict[str, float | int | bool | str] = {}
    for number, _, body in _read_fields(payload):
        if number != 2 or not isinstance(body, bytes):
            continue
        name = ""
        value: float | int | bool | str | None = None
        for n, _, v in _read_fields(body):
            if n == 1 and isinstance(v, bytes):
                name = v.decode()
            elif n in (10, 11) and isinstance(v, int):
                value = v
            elif n == 12 and isinstance(v, bytes):
                value = struct.unpack("<f", v)[0]
            elif n == 13 and isinstance(v, bytes):
                value = struct.unpack("<d", v)[0]
            elif n == 14 and isinstance(v, int):
                value = bool(v)
            elif n == 15 and isinstance(v, bytes):
                value = v.decode()
        if name and value is not None:
            metrics[name] = value
    return metrics


# -- Sparkplug B edge node -----------------------------------------------------------------------


class SparkplugNode:
    """A Sparkplug B edge node with one device per plant.

    ``async with`` connects (with an NDEATH will carrying ``bd_seq``), publishes NBIRTH and the
    DBIRTHs, and answers commands in a task named ``hil[sparkplug:<group>/<node>].commands`` until
    it leaves (publishing NDEATH). Each new connection increments ``bd_seq``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        group: str = "plant",
        node: str = "edge1",
        devices: Mapping[str, PumpPlant] | Sequence[str] = ("pump1",),
        bd_seq: int = 0,
        client_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.group = group
        self.node = node
        self.plants = _plants(devices)
        self.bd_seq = bd_seq
        self.client_id = client_id or f"hil-sparkplug-{group}-{node}"
        self.seq = 0
        self.rebirths = 0
        self.commands: list[tuple[str, dict[str, float | int | bool | str]]] = []
        self.started = time.monotonic()
        self._aliases: dict[tuple[str | None, str], int] = {}
        for name in ("bdSeq", "Node Control/Rebirth", "uptime"):
            self._alias(None, name)
        for device in self.plants:
            for name in (*VALUES, "running", "speed_setpoint"):
                self._alias(device, name)
        self._client: aiomqtt.Client | None = None
        self._group: asyncio.TaskGroup | None = None
        self._commands_task: asyncio.Task[None] | None = None

    def _alias(self, device: str | None, name: str) -> int:
        return self._aliases.setdefault((device, name), len(self._aliases) + 1)

    def topic(self, kind: str, device: str | None = None) -> str:
        tail = f"/{device}" if device is not None else ""
        return f"spBv1.0/{self.group}/{kind}/{self.node}{tail}"

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def skip_seq(self, count: int = 1) -> None:
        """Fault: lose ``count`` sequence numbers, as if messages had been dropped."""
        self.seq = (self.seq + count) % 256

    def death_payload(self, bd_seq: int | None = None) -> bytes:
        bd = self.bd_seq if bd_seq is None else bd_seq
        return payload_bytes([metric_bytes(name="bdSeq", datatype=UINT64, value=bd)], seq=None)

    # -- connection ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        will = aiomqtt.Will(self.topic("NDEATH"), self.death_payload(), qos=1)
        self._client = aiomqtt.Client(self.host, self.port, identifier=self.client_id, will=will)
        await self._client.__aenter__()
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        try:
            await self._client.subscribe([(self.topic("NCMD"), 1), (self.topic("DCMD", "+"), 1)])
            self._commands_task = self._group.create_task(
                self._serve_commands(), name=f"hil[sparkplug:{self.group}/{self.node}].commands"
            )
            await self.birth()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.topic("NDEATH"), self.death_payload(), qos=1)
        if self._commands_task is not None:
            self._commands_task.cancel()
        if self._group is not None:
            group, self._group = self._group, None
            await group.__aexit__(None, None, None)
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)
        self.bd_seq = (self.bd_seq + 1) % 256

    @property
    def client(self) -> aiomqtt.Client:
        if self._client is None:
            raise RuntimeError("use the node as 'async with SparkplugNode(...)'")
        return self._client

    # -- messages --------------------------------------------------------------------------------

    async def birth(self) -> None:
        """NBIRTH (seq 0, bdSeq) then one DBIRTH per device, with every metric's name, alias and type."""
        ts = _now_ms()
        self.seq = 0
        node_metrics = [
            metric_bytes(name="bdSeq", datatype=UINT64, value=self.bd_seq, timestamp=ts),
            metric_bytes(
                name="Node Control/Rebirth",
                alias=self._alias(None, "Node Control/Rebirth"),
                datatype=BOOLEAN,
                value=False,
                timestamp=ts,
            ),
            metric_bytes(name="uptime", alias=self._alias(None, "uptime"), datatype=DOUBLE, value=self.uptime()),
        ]
        await self.client.publish(self.topic("NBIRTH"), payload_bytes(node_metrics, seq=0, timestamp=ts), qos=0)
        for device in self.plants:
            await self.device_birth(device)

    async def device_birth(self, device: str) -> None:
        ts = _now_ms()
        metrics = [
            metric_bytes(name=name, alias=self._alias(device, name), datatype=dt, value=value, timestamp=ts)
            for name, dt, value in self._device_values(device)
        ]
        payload = payload_bytes(metrics, seq=self._next_seq(), timestamp=ts)
        await self.client.publish(self.topic("DBIRTH", device), payload, qos=0)

    def _device_values(self, device: str) -> list[tuple[str, int, float | bool]]:
        plant = self.plants[device]
        values = plant.values()
        out: list[tuple[str, int, float | bool]] = [(name, DOUBLE, round(values[name], 4)) for name in VALUES]
        out.append(("running", BOOLEAN, plant.running))
        out.append(("speed_setpoint", DOUBLE, plant.speed_setpoint))
        return out

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)

    async def publish_data(self, dt: float = 1.0, *, devices: Sequence[str] | None = None) -> None:
        """Step the plants by ``dt`` s and publish one DDATA per device (aliases only, no names)."""
        ts = _now_ms()
        for device in devices if devices is not None else list(self.plants):
            self.plants[device].step(dt)
            metrics = [
                metric_bytes(alias=self._alias(device, name), datatype=data_type, value=value, timestamp=ts)
                for name, data_type, value in self._device_values(device)
            ]
            await self.client.publish(
                self.topic("DDATA", device), payload_bytes(metrics, seq=self._next_seq(), timestamp=ts), qos=0
            )

    async def publish_node_data(self) -> None:
        """One NDATA with the node's uptime (by alias)."""
        metric = metric_bytes(alias=self._alias(None, "uptime"), datatype=DOUBLE, value=self.uptime())
        await self.client.publish(self.topic("NDATA"), payload_bytes([metric], seq=self._next_seq()), qos=0)

    async def device_death(self, device: str) -> None:
        await self.client.publish(self.topic("DDEATH", device), payload_bytes([], seq=self._next_seq()), qos=0)

    async def node_death(self, bd_seq: int | None = None) -> None:
        """Publish an NDEATH now (``bd_seq`` other than the live one makes it a stale death)."""
        await self.client.publish(self.topic("NDEATH"), self.death_payload(bd_seq), qos=1)

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        await self.client.publish(topic, payload, qos=0)

    async def _serve_commands(self) -> None:
        try:
            await self._commands()
        except aiomqtt.MqttError as exc:
            logger.info("sparkplug node %s/%s: connection lost (%s)", self.group, self.node, exc)

    async def _commands(self) -> None:
        async for message in self.client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                metrics = command_metrics(payload)
            except (ValueError, IndexError, UnicodeDecodeError, struct.error):
                logger.warning("sparkplug node %s: malformed command on %s", self.node, topic)
                continue
            self.commands.append((topic, metrics))
            if topic == self.topic("NCMD") and metrics.get("Node Control/Rebirth") is True:
                self.rebirths += 1
                logger.info("sparkplug node %s/%s: rebirth requested", self.group, self.node)
                await self.birth()
                continue
            device = topic.rsplit("/", 1)[-1] if "/DCMD/" in topic else None
            if device in self.plants and "speed_setpoint" in metrics:
                plant = self.plants[device]
                plant.set_speed(float(metrics["speed_setpoint"]))
                metric = metric_bytes(
                    alias=self._alias(device, "speed_setpoint"), datatype=DOUBLE, value=plant.speed_setpoint
                )
                await self.client.publish(
                    self.topic("DDATA", device), payload_bytes([metric], seq=self._next_seq()), qos=0
                )

    async def run(self, interval: float, *, count: int | None = None) -> None:
        done = 0
        while count is None or done < count:
            await self.publish_data(interval)
            done += 1
            await asyncio.sleep(interval)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hil.mqtt_sensors --port N``: a sensor fleet and a Sparkplug node until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m hil.mqtt_sensors", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between publications")
    parser.add_argument("--assets", default="pump1,pump2", help="comma-separated asset names")
    parser.add_argument("--group", default="plant", help="Sparkplug group id")
    parser.add_argument("--node", default="edge1", help="Sparkplug edge node id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    assets = [a for a in args.assets.split(",") if a]

    async def serve() -> None:
        async with (
            SensorFleet(args.host, args.port, assets=assets) as fleet,
            SparkplugNode(args.host, args.port, group=args.group, node=args.node, devices=assets) as node,
            asyncio.TaskGroup() as tg,
        ):
            tg.create_task(fleet.run(args.interval), name="hil[mqtt].fleet")
            tg.create_task(node.run(args.interval), name=f"hil[sparkplug:{args.group}/{args.node}].data")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
