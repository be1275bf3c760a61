"""Counters of the northbound endpoints.

Every endpoint keeps plain integer counters (no locking: one event loop) and answers ``counters()``
with a ``NorthStats``; the gateway holds the endpoints it runs (``Gateway.north``), and ``/status``
and ``/metrics`` read them through ``Gateway.north_stats()``.
"""

from __future__ import annotations

from typing import Protocol

import msgspec


class NorthStats(msgspec.Struct, frozen=True):
    """One endpoint's figures since the gateway started.

    ``connected``: the OPC UA server listens / the MQTT client is connected to the broker.
    ``sessions``: OPC UA sessions open now (MQTT: 1 while connected). ``connects``: MQTT connections
    made, OPC UA logins accepted. ``published``: MQTT messages / OPC UA value updates sent.
    ``commands``: set commands received (MQTT set topics, Sparkplug DCMD metrics and NCMD, OPC UA writes
    to writable variables); ``refused_commands`` of them refused before reaching the twin,
    ``failed_commands`` accepted but failed at the device. ``errors``: broker connection failures
    (MQTT), refused logins and untrusted client certificates (OPC UA).
    """

    connected: bool
    sessions: int
    connects: int
    published: int
    commands: int
    refused_commands: int
    failed_commands: int
    errors: int


class Endpoint(Protocol):
    def counters(self) -> NorthStats: ...


__all__ = ["Endpoint", "NorthStats"]
