"""The socket options every gateway MQTT client sets once connected, on a real Mosquitto."""

from __future__ import annotations

import socket

import aiomqtt

from avila_edge.sync.mqtt_client import no_delay
from hil.mosquitto import Mosquitto


async def test_a_connected_client_sends_each_packet_at_once(broker: Mosquitto) -> None:
    """TCP_NODELAY: without it a small packet (an ack, a PUBACK-awaited publish) waits behind an
    unacknowledged one, about 40 ms a hop with delayed ACKs."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        sock = client._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # paho's default
        no_delay(client)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await client.publish("t/x", b"1", qos=1)  # the connection still works


async def test_a_client_that_never_connected_is_left_alone() -> None:
    no_delay(aiomqtt.Client("127.0.0.1", 1))  # no socket yet: nothing to set, nothing raised
