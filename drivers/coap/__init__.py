"""CoAP driver: observes or polls the resources of constrained nodes, and accepts SenML packs
(RFC 8428, JSON or CBOR) that nodes POST to the gateway."""

from __future__ import annotations

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock
from avila_edge.driver import Driver, DriverPlugin
from drivers.coap.config import CoapAddress, CoapConnection


def _create(device: DeviceConfig, clock: Clock) -> Driver:
    from drivers.coap.driver import CoapDriver  # noqa: PLC0415 - aiocoap loads only when used

    return CoapDriver(device, clock=clock)


def _check(device: DeviceConfig) -> list[tuple[str, str]]:
    from drivers.coap.checks import check_device  # noqa: PLC0415

    return check_device(device)


plugin = DriverPlugin(
    name="coap",
    connection_type=CoapConnection,
    address_type=CoapAddress,
    create=_create,
    check_device=_check,
)

__all__ = ["CoapAddress", "CoapConnection", "plugin"]
