"""Configuration bundles from the fleet: validated, staged on disk, applied by restarting the gateway
in-process, rolled back when the new configuration does not start.

Files in ``<state_dir>/config/`` (mode 0600, each written to a temp file, fsynced and renamed):

- ``candidate.yaml`` — a bundle accepted and validated, not yet running (``candidate.json`` names its
  command id); found at start, it is applied then, so a stop between accepting and applying loses nothing;
- ``active.yaml`` — the bundle running now (``active.json`` names its command id, its sha256 and the
  sha256 of the local configuration file it replaced);
- ``previous.yaml`` — the bundle (or local file) it replaced, for the rollback.

On start, ``active.yaml`` wins over the local configuration file only while that file is unchanged
since the bundle was applied: an engineer who edits the local file on site deliberately takes back
control (a warning says so).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from avila_edge.config import parse_config
from avila_edge.config.model import GatewayConfig
from avila_edge.core import Clock, ConfigError, ConfigIssue, Event
from avila_edge.core.files import write_private

logger = logging.getLogger(__name__)

SOURCE = "config"


class BundleInfo(msgspec.Struct, frozen=True):
    command_id: int
    sha256: str
    base_sha256: str


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class BundleStore:
    """The configuration files of one gateway: its local file and the fleet bundles in its state dir."""

    def __init__(self, state_dir: Path, base: Path | None) -> None:
        self.folder = state_dir / "config"
        self.base = base

    @property
    def candidate(self) -> Path:
        return self.folder / "candidate.yaml"

    @property
    def active(self) -> Path:
        return self.folder / "active.yaml"

    @property
    def previous(self) -> Path:
        return self.folder / "previous.yaml"

    @property
    def info_file(self) -> Path:
        return self.folder / "active.json"

    def _base_sha(self) -> str:
        return sha256(self.base.read_text()) if self.base is not None and self.base.exists() else ""

    def info(self) -> BundleInfo | None:
        if not self.info_file.exists():
            return None
        return msgspec.json.decode(self.info_file.read_bytes(), type=BundleInfo)

    def effective(self, local: GatewayConfig) -> tuple[GatewayConfig, str]:
        """The configuration to run: the active bundle while the local file is unchanged, else ``local``."""
        info = self.info()
        if info is None or not self.active.exists():
            return local, "local"
        if info.base_sha256 != self._base_sha():
            logger.warning(
                "%s changed since fleet bundle %d was applied: running the local file, not the bundle",
                self.base,
                info.command_id,
            )
            return local, "local"
        try:
            bundle = parse_config(self.active.read_text(), filename=str(self.active))
            return msgspec.structs.replace(bundle, state_dir=local.state_dir), f"bundle {info.command_id}"
        except ConfigError as exc:
            logger.error("the active fleet bundle does not load (%s): running the local file", exc)  # noqa: TRY400
            return local, "local"

    def validate(self, text: str, *, command_id: int, current: GatewayConfig) -> GatewayConfig:
        """The bundle as a configuration, or ``ConfigError`` naming every problem (file:line)."""
        # the state directory belongs to the device, not to the fleet's bundle
        config = msgspec.structs.replace(
            parse_config(text, filename=f"fleet-bundle-{command_id}.yaml"), state_dir=current.state_dir
        )
        name = f"fleet-bundle-{command_id}.yaml"
        problems = []
        if config.site.id != current.site.id:
            problems.append(
                ConfigIssue(
                    name, None, "site.id", f"the bundle is for site '{config.site.id}', not '{current.site.id}'"
                )
            )
        carriers = {u.name: u.fleet_key for u in current.uplinks if u.fleet_key is not None}
        kept = {u.name: u.fleet_key for u in config.uplinks}
        if carriers and not any(kept.get(n) == key for n, key in carriers.items()):
            problems.append(
                ConfigIssue(name, None, "uplinks", "the bundle drops every uplink that carries this fleet's commands")
            )
        if problems:
            raise ConfigError(problems)
        return config

    def stage(self, text: str, command_id: int) -> None:
        write_private(self.candidate, text.encode())
        write_private(self.candidate.with_suffix(".json"), msgspec.json.encode({"command_id": command_id}))

    def pending(self, current: GatewayConfig) -> Reload | None:
        """A bundle staged but never applied (the process stopped in between): to be applied now."""
        marker = self.candidate.with_suffix(".json")
        if not (self.candidate.exists() and marker.exists()):
            return None
        try:
            command_id = int(msgspec.json.decode(marker.read_bytes())["command_id"])
            text = self.candidate.read_text()
            config = self.validate(text, command_id=command_id, current=current)
        except (ConfigError, msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            logger.error("discarding a staged fleet bundle that does not load: %s", exc)  # noqa: TRY400
            self.discard()
            return None
        logger.info("applying fleet bundle %d, staged before the last stop", command_id)
        return Reload(config=config, text=text, command_id=command_id)

    def promote(self, command_id: int, text: str, replaced: str) -> None:
        """The candidate runs: make it active and keep what it replaced."""
        write_private(self.previous, replaced.encode())
        write_private(self.active, text.encode())
        info = BundleInfo(command_id=command_id, sha256=sha256(text), base_sha256=self._base_sha())
        write_private(self.info_file, msgspec.json.encode(info))
        self.discard()

    def discard(self) -> None:
        self.candidate.unlink(missing_ok=True)
        self.candidate.with_suffix(".json").unlink(missing_ok=True)


class Reload(msgspec.Struct, frozen=True):
    """A request to restart the gateway on another configuration (an accepted fleet bundle)."""

    config: GatewayConfig
    text: str
    command_id: int


Runner = Callable[[GatewayConfig, list[Event], Callable[[], None]], Awaitable[Reload | None]]
"""Runs a gateway on a configuration: journals the given events and calls the callback once it is
running, then returns ``None`` when it was stopped or the ``Reload`` it was asked for. Raises when the
gateway fails."""


async def serve(local: GatewayConfig, local_text: str, store: BundleStore, run: Runner, *, clock: Clock) -> int:
    """Run the gateway, restarting it in-process for each accepted bundle; roll back to the
    configuration that ran before when a bundle's gateway fails before it is running."""
    config, source = store.effective(local)
    text = store.active.read_text() if source != "local" else local_text
    logger.info("configuration: %s", source)
    good = (config, text)
    candidate = store.pending(config)
    events: list[Event] = []
    if candidate is not None:
        config, text = candidate.config, candidate.text
        events = [_applied(candidate, clock)]
    while True:
        started = False

        def on_started(candidate: Reload | None = candidate, replaced: str = good[1]) -> None:
            nonlocal started
            started = True
            if candidate is not None:
                store.promote(candidate.command_id, candidate.text, replaced)

        try:
            reload = await run(config, events, on_started)
        except Exception as exc:
            if started or candidate is None:
                raise
            logger.exception("fleet bundle %d did not start; rolling back", candidate.command_id)
            store.discard()
            events = [
                Event(kind="config_rolled_back", source=SOURCE, ts=clock.now_ns(),
                      attrs={"id": candidate.command_id, "reason": f"{type(exc).__name__}: {exc}"})
            ]  # fmt: skip
            config, text = good
            candidate = None
            continue
        if reload is None:
            return 0
        good = (config, text)
        candidate = reload
        config, text = reload.config, reload.text
        events = [_applied(reload, clock)]


def _applied(reload: Reload, clock: Clock) -> Event:
    return Event(kind="config_applied", source=SOURCE, ts=clock.now_ns(),
                 attrs={"id": reload.command_id, "sha256": sha256(reload.text)})  # fmt: skip
