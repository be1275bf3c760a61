"""Server mode: SenML packs POSTed by nodes become readings of the points their records name.

Answers: 2.04 Changed once the readings are accepted by the sink; 4.00 Bad Request for a malformed
pack (invalid JSON/CBOR/UTF-8, not a SenML pack, wrong field types, a bad name, a record value the
point's type cannot hold) — the records that were fine are still accepted; 4.04 Not Found when no
record names a configured point; 4.13 Request Entity Too Large beyond ``max_payload``; 4.15
Unsupported Content-Format for anything but SenML JSON (110) or CBOR (112); 5.03 when the gateway
cannot accept readings. Every refusal is counted by kind, and logged with the source address and an
excerpt of the payload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from avila_edge.config.model import DeviceConfig, PointConfig
from avila_edge.core import Clock, GatewayError, Reading
from avila_edge.driver import DriverHealth, ReadingSink
from avila_edge.driver.scaling import to_engineering
from drivers.coap import codec, senml
from drivers.coap.codec import PayloadError
from drivers.coap.config import CoapAddress, CoapConnection
from drivers.coap.points import PointBook
from drivers.coap.senml import SenmlError
from drivers.coap.transport import Inbound, Reply

logger = logging.getLogger("drivers.coap.driver")

_SHOWN_NAMES = 5


def names_of(device: DeviceConfig) -> dict[str, PointConfig]:
    """Resolved SenML name -> point, from the connection's ``names`` and the points' ``address.name``."""
    conn: CoapConnection = device.connection
    points = {p.id: p for p in device.points}
    out = {name: points[pid] for name, pid in conn.names.items() if pid in points}
    for p in device.points:
        a: CoapAddress = p.address
        if a.name is not None:
            out[a.name] = p
    return out


class PackIngest:
    """Turns inbound packs into readings; ``handle`` is the ingest server's request handler."""

    def __init__(self, device: DeviceConfig, book: PointBook, health: DriverHealth, clock: Clock) -> None:
        self.device = device
        self.book = book
        self.health = health
        self.clock = clock
        conn: CoapConnection = device.connection
        self.max_payload = int(conn.max_payload)
        self.silence = conn.silence
        self.by_name = names_of(device)
        self.sink: ReadingSink | None = None
        self._heard: dict[str, float] = {}

    async def handle(self, inbound: Inbound) -> Reply:
        now = self.clock.now_ns()
        self.health.requests += 1
        where = f"{inbound.source} on {inbound.path}"
        payload = inbound.payload
        if inbound.incomplete or len(payload) > self.max_payload:
            size = "a blockwise pack" if inbound.incomplete else f"a pack of {len(payload)} bytes"
            why = f"{size} exceeds max_payload {self.max_payload}"
            self.book.problem("oversize", where, why, payload)
            return Reply("4.13", why)
        if inbound.content_format not in (senml.JSON, senml.CBOR):
            why = f"content-format {inbound.content_format} is not SenML JSON (110) or SenML CBOR (112)"
            self.book.problem("unsupported_format", where, why, payload)
            return Reply("4.15", why)
        try:
            records = senml.resolve(senml.decode(payload, inbound.content_format), now)
        except SenmlError as exc:
            self.book.problem(exc.kind, where, str(exc), payload)
            return Reply("4.00", str(exc))
        readings, unknown, refused = self._readings(records, where, payload, now)
        if unknown:
            for _ in unknown:
                self.health.count("unknown_name")
            shown = ", ".join(repr(n) for n in unknown[:_SHOWN_NAMES])
            more = f" and {len(unknown) - _SHOWN_NAMES} more" if len(unknown) > _SHOWN_NAMES else ""
            logger.debug("%s: %s sent records no point takes: %s%s", self.device.id, where, shown, more)
            if not readings:
                return Reply("4.04", f"no configured point takes {shown}{more}")
        if readings:
            sink = self.sink
            if sink is None:
                return Reply("5.03", "the gateway is not ready")
            try:
                await sink(readings)
            except GatewayError as exc:
                logger.warning("%s: cannot accept the pack from %s: %s", self.device.id, where, exc)
                return Reply("5.03", "the gateway cannot accept readings now")
            mono = self.clock.monotonic()
            for r in readings:
                if r.good:
                    self._heard[r.point] = mono
        self.health.success(now)
        return Reply("4.00", refused) if refused else Reply("2.04")

    def _readings(
        self, records: Sequence[senml.Record], where: str, payload: bytes, now: int
    ) -> tuple[list[Reading], list[str], str]:
        out: list[Reading] = []
        unknown: list[str] = []
        refused = ""
        for r in records:
            point = self.by_name.get(r.name)
            if point is None:
                unknown.append(r.name)
                continue
            try:
                value = to_engineering(codec.coerce(r.value, point.type), point)
            except PayloadError as exc:
                why = f"record {r.name!r}: {exc}"
                self.book.problem(exc.kind, where, why, payload)
                out.append(self.book.bad(point.id, f"malformed record from {where}: {why}", now))
                refused = refused or why
                continue
            out.append(self.book.good(point, value, r.time_ns, now))
        return out, unknown, refused

    async def watch_silence(self, sink: ReadingSink) -> None:
        """Mark points Bad that no record reached for ``max_silence`` (when configured)."""
        if self.silence is None:
            return
        started = self.clock.monotonic()
        reason = f"no SenML record for {self.silence:g} s"
        while True:
            await self.clock.sleep(self.silence / 4)
            now_mono = self.clock.monotonic()
            stale = [
                p
                for p in self.by_name.values()
                if now_mono - self._heard.get(p.id, started) >= self.silence and not self.book.is_bad(p.id)
            ]
            if stale:
                await sink(self.book.bad_all(stale, reason, self.clock.now_ns()))


async def forever() -> None:
    """Wait until cancelled."""
    await asyncio.Event().wait()
