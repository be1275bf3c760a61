"""Counters of the northbound endpoints, and where ``/status`` and ``/metrics`` find them.

Every endpoint keeps plain integer counters (no locking: one event loop) and answers ``stats()`` with
a ``NorthStats``. ``services(...)`` files the endpoints it builds under the gateway's ``TwinService``,
so the operations endpoints reach them with ``running(twins)`` without holding a reference that
would outlive the gateway.
"""

from __future__ import annotations

import weakref
from typing import Protocol

import msgspec

from avila_edge.twins.service import TwinService


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


_RUNNING: weakref.WeakKeyDictionary[TwinService, dict[str, Endpoint]] = weakref.WeakKeyDictionary()


def register(twins: TwinService, endpoints: dict[str, Endpoint]) -> None:
    """File the endpoints built for the gateway whose twins are ``twins`` (replacing earlier ones)."""
    _RUNNING[twins] = dict(endpoints)


def running(twins: TwinService) -> dict[str, NorthStats]:
    """``{"opcua"|"mqtt"|"sparkplug": NorthStats}`` for the endpoints configured on that gateway."""
    return {name: e.counters() for name, e in _RUNNING.get(twins, {}).items()}


__all__ = ["Endpoint", "NorthStats", "register", "running"]
