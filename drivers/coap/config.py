"""Frozen configuration of a CoAP connection and of one point's address.

A device's ``connection.mode`` picks one of two ways:

- ``client`` — the device is a constrained node at ``coap://host:port``; every point names a
  resource ``path`` on it and how to read the payload (``number`` text, ``json`` with a
  ``value_path``, or a ``senml`` pack with a record ``name``). Resources are observed (RFC 7641)
  unless a point says ``observe: false``, then they are polled with GET at the point's
  ``poll_interval``.
- ``server`` — the gateway listens on ``host:port`` (loopback by default) and nodes POST SenML
  packs (RFC 8428, JSON or CBOR) to one of ``paths``; a record's resolved name selects the point,
  through the ``names`` map or a point's ``address.name``.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from avila_edge.config.units import ByteSize, Duration

Mode = Literal["client", "server"]
Format = Literal["number", "json", "senml"]

DEFAULT_PORT: Final = 5683
DEFAULT_SERVER_HOST: Final = "127.0.0.1"
DEFAULT_MAX_PAYLOAD: Final = 16 * 1024
DEFAULT_MAX_SILENCE: Final = 90.0
"""Client mode: seconds without a notification before an observation counts as lost (a notification's
default Max-Age is 60 s; nodes that notify less often need a longer ``max_silence``)."""


class CoapConnection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the node is (client mode) or where the gateway listens for SenML packs (server mode).

    ``max_silence``: client mode re-registers an observation that stayed silent that long (default
    90 s); server mode marks a point Bad when no record reached it that long (default: never).
    """

    mode: Mode = "client"
    host: str | None = None
    port: int = DEFAULT_PORT
    max_payload: ByteSize = DEFAULT_MAX_PAYLOAD
    max_silence: Duration | None = None
    paths: tuple[str, ...] = ("senml",)
    names: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def listen_host(self) -> str:
        return self.host if self.host is not None else DEFAULT_SERVER_HOST

    @property
    def silence(self) -> float | None:
        """The silence limit in seconds for this mode (None: no limit)."""
        if self.max_silence is not None:
            return self.max_silence
        return DEFAULT_MAX_SILENCE if self.mode == "client" else None


class CoapAddress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where one point's value comes from.

    Client mode: ``path`` (a resource on the node), ``format`` (default: ``senml`` when ``name`` is
    given, ``json`` when ``value_path`` is, else ``number``), ``observe`` (default true).
    Server mode: ``name``, the resolved SenML name of the record (or ``{}`` and an entry in the
    connection's ``names`` map).
    """

    path: str | None = None
    format: Format | None = None
    value_path: str | None = None
    name: str | None = None
    observe: bool = True

    @property
    def fmt(self) -> Format:
        if self.format is not None:
            return self.format
        if self.name is not None:
            return "senml"
        if self.value_path is not None:
            return "json"
        return "number"


def path_segments(path: str) -> tuple[str, ...]:
    """The Uri-Path segments of ``/a/b`` (or ``a/b``)."""
    return tuple(s for s in path.strip("/").split("/") if s)


def normal_path(path: str) -> str:
    """``/a/b`` for ``a/b``, ``/a/b/`` and ``/a/b``."""
    return "/" + "/".join(path_segments(path))
