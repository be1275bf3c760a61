"""Fleet commands reach the twin and the device; unsigned, stale, replayed or foreign ones are refused
and journaled. Against a real Mosquitto and the hil/ PLC."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from avila_edge.sync.downlink import CommandGate, CommandRefused, DesiredCommand, sign_command
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import Mosquitto

FLEET = Ed25519PrivateKey.generate()
FLEET_PUB = base64.b64encode(FLEET.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def command(id_: int, *, gateway: str = "gw1", ttl: float = 60.0, value: int = 1800) -> DesiredCommand:
    return DesiredCommand(id=id_, gateway=gateway, expires_ns=time.time_ns() + int(ttl * 1e9),
                          asset="pump1", name="speed_setpoint", value=value)  # fmt: skip


def test_the_gate_refuses_everything_but_fresh_signed_commands_for_this_gateway(tmp_path: Path) -> None:
    from avila_edge.sync.downlink import load_fleet_key

    gate = CommandGate("gw1", load_fleet_key(FLEET_PUB), tmp_path / "last")
    now = time.time_ns()
    good = gate.check(sign_command(FLEET, command(5)), now)
    gate.accept(good)
    cases = {
        b'{"command": "e30=", "signature": "AAAA"}': "bad signature",
        sign_command(Ed25519PrivateKey.generate(), command(6)): "bad signature",
        sign_command(FLEET, command(5)): "replayed",
        sign_command(FLEET, command(4)): "replayed",
        sign_command(FLEET, command(7, ttl=-1)): "expired",
        sign_command(FLEET, command(8, gateway="other")): "for gateway 'other'",
        b"not json": "not a signed command",
    }
    for payload, reason in cases.items():
        with pytest.raises(CommandRefused, match=reason):
            gate.check(payload, now)
    assert CommandGate("gw1", load_fleet_key(FLEET_PUB), tmp_path / "last").last_id == 5  # survives a restart


SITE = """
site: {{id: gw1}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
uplinks:
  - {{host: 127.0.0.1, port: {broker}, plaintext: true, fleet_key: "{key}", batch_age: 50ms}}
asset_types:
  - id: pump
    writable: {{speed_setpoint: {{tolerance: 1, timeout: 5s}}}}
assets: [{{id: pump1, type: pump}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: {plc}}}
    timing: {{poll_interval: 100ms}}
    points:
      - {{id: pump1/speed_setpoint, address: {{table: holding, address: 10}}, type: uint16, writable: true}}
"""


async def test_a_signed_command_sets_the_device_and_bad_ones_are_journaled(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        async with ModbusPlc() as plc:
            config = parse_config(
                SITE.format(state=tmp_path, broker=broker.port, plc=plc.port, key=FLEET_PUB), filename="s"
            )
            async with Gateway.running(config, clock=SystemClock()) as gateway:
                await asyncio.sleep(0.5)  # uplink connected and subscribed
                async with aiomqtt.Client("127.0.0.1", broker.port) as fleet:
                    await fleet.publish("avila/gw1/command", sign_command(FLEET, command(1, value=2200)), qos=1)
                    await fleet.publish("avila/gw1/command", sign_command(FLEET, command(1, value=100)), qos=1)
                    await fleet.publish(
                        "avila/gw1/command", sign_command(Ed25519PrivateKey.generate(), command(2)), qos=1
                    )
                async with asyncio.timeout(15):
                    while gateway.twins.state("pump1").desired.get("speed_setpoint") is None or (
                        gateway.twins.state("pump1").desired["speed_setpoint"].status.value != "confirmed"
                    ):
                        await asyncio.sleep(0.1)
                assert plc.plant.speed_setpoint == 2200
                await asyncio.sleep(0.3)
                events = [e.event() for e in await gateway.journal.read(0, 10_000, kinds=[EntryKind.EVENT])]
    kinds = [e.kind for e in events]
    assert kinds.count("command") == 1
    assert kinds.count("command_refused") == 2
    reasons = sorted(str(e.attrs["reason"]) for e in events if e.kind == "command_refused")
    assert reasons[0].startswith("bad signature")
    assert "replayed" in reasons[1]
    desired = [e.attrs["status"] for e in events if e.kind == "desired"]
    assert desired == ["pending", "confirmed"]
