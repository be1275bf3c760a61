"""Applies verified fleet commands to the twins; every command, accepted or refused, is journaled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import Clock, Event, GatewayError
from avila_edge.sync.downlink import CommandGate, CommandRefused, load_fleet_key
from avila_edge.twins.service import TwinService

logger = logging.getLogger(__name__)

Record = Callable[[Sequence[Event]], Awaitable[None]]


class CommandHandler:
    def __init__(
        self,
        uplink: MqttUplinkConfig,
        *,
        gateway: str,
        state_dir: Path,
        twins: TwinService,
        record: Record,
        clock: Clock,
    ) -> None:
        assert uplink.fleet_key is not None
        self.source = f"uplink/{uplink.name}"
        self.gate = CommandGate(
            gateway, load_fleet_key(uplink.fleet_key), state_dir / f"downlink-{uplink.name}.last-id"
        )
        self.twins = twins
        self.record = record
        self.clock = clock

    async def __call__(self, payload: bytes) -> None:
        now = self.clock.now_ns()
        try:
            command = self.gate.check(payload, now)
        except CommandRefused as exc:
            logger.warning("fleet command refused: %s", exc)
            await self.record([Event(kind="command_refused", source=self.source, ts=now, attrs={"reason": str(exc)})])
            return
        await asyncio.to_thread(self.gate.accept, command)  # durable (fsync) before acting: off the event loop
        events = [
            Event(kind="command", source=self.source, ts=now,
                  attrs={"id": command.id, "asset": command.asset, "name": command.name, "value": command.value})
        ]  # fmt: skip
        try:
            _, more = await self.twins.set_desired(
                command.asset, command.name, command.value, expected_version=None, by=f"fleet:{command.id}"
            )
            events += more
        except GatewayError as exc:
            events.append(
                Event(kind="command_failed", source=self.source, ts=now, attrs={"id": command.id, "reason": str(exc)})
            )
        await self.record(events)
