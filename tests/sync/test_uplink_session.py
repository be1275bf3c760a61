"""The uplink's connection to a real Mosquitto: TLS with a client certificate (mTLS), MQTT 5 and 3.1.1,
and a persistent session that keeps what the fleet sent while the gateway was away."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import SystemClock
from avila_edge.journal import Journal
from avila_edge.sync.mqtt_uplink import MqttUplink
from hil.mosquitto import Mosquitto

from .conftest import Fleet
from .test_mqtt_uplink import readings, shipping, uplink_config

PROTOCOLS = [5, "3.1.1"]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A broker with a plain loopback listener (the test fleet) and a TLS one that wants a client certificate."""
    with Mosquitto(tls=True, require_certificate=True) as m:
        yield m


def tls_config(
    broker: Mosquitto, *, protocol: object = 5, cert: bool = True, ca: Path | None = None
) -> MqttUplinkConfig:
    files = broker.tls_files
    assert files is not None and broker.tls_port is not None
    tls: dict[str, object] = {"ca_file": ca or files.ca_file}
    if cert:
        tls |= {"cert_file": files.client_cert, "key_file": files.client_key}
    return msgspec.convert(
        {"host": "127.0.0.1", "port": broker.tls_port, "tls": tls, "protocol": protocol, "batch_max": 200,
         "batch_age": 0.05, "reconnect_max": 1.0, "ack_timeout": 2.0},
        MqttUplinkConfig,
    )  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_with_a_client_certificate_the_uplink_ships_everything_over_tls(
    tmp_path: Path, broker: Mosquitto, fleet: Fleet, protocol: object
) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings(500))
        async with shipping(journal, tls_config(broker, protocol=protocol)) as uplink:
            await fleet.until(lambda: len(fleet.seqs) == 500)
            assert uplink.stats().connected
            async with asyncio.timeout(10):
                while journal.cursors()["uplink:cloud:readings"].position < 500:  # at the PUBACKs
                    await asyncio.sleep(0.02)
    assert set(fleet.seqs) == set(range(500))
    assert "New client connected" in broker.log_text()


@pytest.mark.parametrize("case", ["no client certificate", "an untrusted broker certificate"])
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # paho-mqtt leaves a refused TLS socket to gc
async def test_without_mutual_trust_nothing_is_sent_and_the_cursor_stays(
    tmp_path: Path, broker: Mosquitto, fleet: Fleet, case: str
) -> None:
    if case == "no client certificate":  # TLS 1.3: the broker's refusal comes after the handshake, and the
        # uplink notices it when no CONNACK came within ack_timeout
        config = tls_config(broker, cert=False)
    else:  # the gateway trusts another CA than the one that signed the broker's certificate
        other = Mosquitto(tls=True)
        try:
            assert other.tls_files is not None
            foreign = tmp_path / "other-ca.pem"
            foreign.write_bytes(other.tls_files.ca_file.read_bytes())
        finally:
            other.close()
        config = tls_config(broker, ca=foreign)
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings(50))
        async with shipping(journal, config) as uplink:
            async with asyncio.timeout(20):
                while uplink.stats().errors < 2:  # refused, retried, refused again
                    await asyncio.sleep(0.05)
            assert not uplink.stats().connected
        assert journal.cursors()["uplink:cloud:readings"].position == 0
    assert fleet.seqs == {}
    with warnings.catch_warnings():  # paho-mqtt leaves the socket of a failed TLS handshake to the collector:
        # collect it here, not in the next test
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_command_sent_while_the_gateway_was_offline_arrives_when_it_reconnects(
    tmp_path: Path, broker: Mosquitto, protocol: object
) -> None:
    received: list[bytes] = []
    got = asyncio.Event()

    async def on_command(payload: bytes) -> None:
        received.append(payload)
        got.set()

    config = uplink_config(broker, protocol=protocol)
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:

        async def connect_once() -> None:
            uplink = MqttUplink(config, gateway="gw1", journal=journal, clock=SystemClock(), on_command=on_command)
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(uplink.run(), name="uplink[cloud]")
                async with asyncio.timeout(10):
                    while not uplink.connected:
                        await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)  # subscribed
                task.cancel()

        await connect_once()  # the session (with its command subscription) is created, then the gateway goes away
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="fleet") as c:
            await c.publish("avila/gw1/command", b"while you were away", qos=1)
        uplink = MqttUplink(config, gateway="gw1", journal=journal, clock=SystemClock(), on_command=on_command)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(uplink.run(), name="uplink[cloud]")
            async with asyncio.timeout(10):
                await got.wait()
            task.cancel()
    assert received == [b"while you were away"]
