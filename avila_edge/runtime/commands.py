"""Applies verified fleet commands to the twins; every command, accepted or refused, is journaled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from avila_edge.config.model import GatewayConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import Clock, ConfigError, Event, GatewayError
from avila_edge.runtime.bundles import SOURCE as CONFIG_SOURCE
from avila_edge.runtime.bundles import BundleStore, Reload, sha256
from avila_edge.sync.downlink import CommandGate, CommandRefused, ConfigCommand, DesiredCommand, load_fleet_key
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
        config: GatewayConfig | None = None,
        bundles: BundleStore | None = None,
        reload: Callable[[Reload], None] | None = None,
    ) -> None:
        assert uplink.fleet_key is not None
        self.source = f"uplink/{uplink.name}"
        self.gate = CommandGate(
            gateway, load_fleet_key(uplink.fleet_key), state_dir / f"downlink-{uplink.name}.last-id"
        )
        self.twins = twins
        self.record = record
        self.clock = clock
        self.config = config
        self.bundles = bundles
        self.reload = reload

    async def __call__(self, payload: bytes) -> None:
        now = self.clock.now_ns()
        try:
            command = self.gate.check(payload, now)
        except CommandRefused as exc:
            logger.warning("fleet command refused: %s", exc)
            await self.record([Event(kind="command_refused", source=self.source, ts=now, attrs={"reason": str(exc)})])
            return
        await asyncio.to_thread(self.gate.accept, command)  # durable (fsync) before acting: off the event loop
        if isinstance(command, ConfigCommand):
            await self.record(await self._bundle(command, now))
            return
        await self._desired(command, now)

    async def _desired(self, command: DesiredCommand, now: int) -> None:
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

    async def _bundle(self, command: ConfigCommand, now: int) -> list[Event]:
        """Validate and stage a configuration bundle, then ask for the restart that applies it."""
        digest = sha256(command.config)
        if self.bundles is None or self.config is None or self.reload is None:
            reason = "this gateway does not accept configuration bundles"
        else:
            try:
                config = await asyncio.to_thread(  # YAML parsing and checks: off the event loop
                    self.bundles.validate, command.config, command_id=command.id, current=self.config
                )
            except ConfigError as exc:
                logger.warning("fleet bundle %d refused: %s", command.id, exc)
                return [
                    Event(kind="command_failed", source=self.source, ts=now,
                          attrs={"id": command.id, "reason": "the bundle is not a valid configuration",
                                 "sha256": digest, "issues": [str(i) for i in exc.issues]})
                ]  # fmt: skip
            await asyncio.to_thread(self.bundles.stage, command.config, command.id)
            self.reload(Reload(config=config, text=command.config, command_id=command.id))
            logger.info("fleet bundle %d (sha256 %s) staged; restarting the gateway on it", command.id, digest)
            return [
                Event(kind="config_staged", source=CONFIG_SOURCE, ts=now,
                      attrs={"id": command.id, "sha256": digest, "yaml": command.config})
            ]  # fmt: skip
        return [Event(kind="command_failed", source=self.source, ts=now, attrs={"id": command.id, "reason": reason})]
