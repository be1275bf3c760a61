"""What the gateway's MQTT clients share about their broker connection: the TLS context built from the
config (uplink, fleet receiver), sending each packet at once (every client), and cleaning up after a
connection attempt that failed."""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import TYPE_CHECKING, Any

from avila_edge.config.sync import MqttTls

if TYPE_CHECKING:
    import aiomqtt


def tls_context(tls: MqttTls | None, *, plaintext: bool) -> ssl.SSLContext | None:
    """None for a plaintext link; else the system's trust store or ``tls.ca_file``, plus the client
    certificate when one is configured (mutual TLS)."""
    if plaintext:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls is not None else None)
    if tls is not None and tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    return context


def close_socket(client: aiomqtt.Client) -> None:
    """Close the socket a failed attempt left open (aiomqtt does not when no CONNACK came, as when
    a TLS 1.3 broker refuses the client's certificate after the handshake)."""
    paho: Any = getattr(client, "_client", None)
    sock = paho.socket() if paho is not None else None
    if sock is not None:
        sock.close()


def no_delay(client: aiomqtt.Client) -> None:
    """Send each packet as soon as it is written (TCP_NODELAY) on a connected client. The gateway's
    packets are small and most wait for an answer (a PUBACK, a fleet ack); Nagle's algorithm holds a
    small packet back while an earlier one is unacknowledged, and with the peer's delayed ACKs that
    is about 40 ms a hop. paho leaves the option off."""
    paho: Any = getattr(client, "_client", None)
    sock = paho.socket() if paho is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # a socket that is not TCP (a test's) keeps its default
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
