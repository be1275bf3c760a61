"""The running gateway: one TaskGroup owning the journal, twins, drivers, uplinks, sinks and endpoints.

Supervision tree (task names)::

    journal.commit, journal.retention          (inside the journal)
    driver[<driver>:<device>]                  one per enabled device, restarted by its supervisor
    twins.tick                                 alarm delays and write deadlines without readings
    uplink[<name>], sink[<name>]               journal cursors shipping data out
    http                                       aiohttp site for /status, /metrics, /healthz, /api
    <services>                                 consumers of twins and journal (see Gateway.services):
                                               anomaly, north.opcua, north.mqtt, north.sparkplug
    systemd.watchdog                           WATCHDOG=1 while the journal keeps committing
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, KeysView, Mapping
from pathlib import Path
from typing import Self

from aiohttp import web

from avila_edge.audit import AuditLog, default_origin
from avila_edge.config.model import GatewayConfig
from avila_edge.config.secrets import read_secret
from avila_edge.core import Backoff, Clock, DeviceRejected, Value
from avila_edge.driver import DriverPlugin, load_plugins
from avila_edge.journal import EntryKind, Journal
from avila_edge.north.counters import Endpoint, NorthStats
from avila_edge.runtime.bundles import BundleStore, Reload
from avila_edge.runtime.commands import CommandHandler
from avila_edge.runtime.pipeline import Pipeline, Units, point_slots
from avila_edge.runtime.supervisor import DriverSupervisor
from avila_edge.sync.influx_sink import InfluxSink
from avila_edge.sync.mqtt_uplink import MqttUplink
from avila_edge.systemd import Notifier
from avila_edge.twins.service import TwinService
from avila_edge.web.app import build_app
from avila_edge.web.tls import server_context

logger = logging.getLogger(__name__)

TICK = 1.0
WATCHDOG_FLUSH_LIMIT = 10.0
SERVICE_BACKOFF = (1.0, 60.0)
SERVICE_HEALTHY_AFTER = 60.0
"""A service that ran this long before failing starts again after the shortest wait."""


class Gateway:
    """``async with Gateway.running(config, clock=...) as gateway: ...`` runs everything until exit."""

    def __init__(
        self,
        config: GatewayConfig,
        journal: Journal,
        *,
        clock: Clock,
        plugins: Mapping[str, DriverPlugin],
        notifier: Notifier,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.clock = clock
        self.notifier = notifier
        self.started_at = time.monotonic()
        slots = point_slots(config)
        self.twins = TwinService(config, writer=self.write, units=Units(slots))
        self.bundles = BundleStore(config.state_dir, config_path)
        self.reload: Reload | None = None
        self.reload_requested = asyncio.Event()
        self.north: dict[str, Endpoint] = {}
        """The northbound endpoints running (opcua, mqtt, sparkplug), for their counters."""
        self.service_problems: dict[str, str] = {}
        """Services that failed and wait to start again: name → why."""
        self.pipeline = Pipeline(config, journal, self.twins, slots=slots)
        self.point_ids: KeysView[str] = self.pipeline.slots.keys()
        """Every configured point id, in configuration order."""
        self.units: Mapping[str, str] = self.pipeline.units
        self.supervisors = [
            DriverSupervisor(plugins[d.driver].create(d, clock), self.pipeline, clock=clock)
            for d in config.devices
            if d.enabled
        ]
        self._owner = {s.driver.device.id: s for s in self.supervisors}
        """The supervisor of each enabled device by device id (a point's device is in its slot)."""
        self.uplinks = [
            MqttUplink(
                u,
                gateway=config.site.id,
                journal=journal,
                clock=clock,
                password=read_secret(u.password_file, what=f"uplink {u.name} password"),
                on_command=None
                if u.fleet_key is None
                else CommandHandler(u, gateway=config.site.id, state_dir=config.state_dir, twins=self.twins,
                                    record=self.pipeline.record, clock=clock, config=config,
                                    bundles=self.bundles, reload=self.request_reload),
            )
            for u in config.uplinks
        ]  # fmt: skip

        self.sinks = [
            InfluxSink(s, config, journal=journal, clock=clock, token=read_secret(s.token_file, what="token") or "")
            for s in config.sinks
        ]
        self.http_url = ""
        self.audit: AuditLog | None = None
        self._last_watchdog_ok = time.monotonic()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        config: GatewayConfig,
        *,
        clock: Clock,
        plugins: Mapping[str, DriverPlugin] | None = None,
        notifier: Notifier | None = None,
        config_path: Path | None = None,
    ) -> AsyncIterator[Self]:
        notifier = notifier or Notifier()
        async with Journal.open(config.state_dir / "journal.sqlite3", config.journal, clock=clock) as journal:
            audit = await AuditLog.attach(
                journal,
                state_dir=config.state_dir,
                config=config.audit,
                origin=config.audit.origin or default_origin(config.site.id),
                clock=clock,
            )
            gateway = cls(config, journal, clock=clock, plugins=load_plugins() if plugins is None else plugins,
                          notifier=notifier, config_path=config_path)  # fmt: skip
            gateway.audit = audit
            await gateway._restore()
            runner = web.AppRunner(build_app(gateway), access_log=None, handle_signals=False)
            await runner.setup()
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(sup.run(), name=sup.name) for sup in gateway.supervisors]
                    tasks += [tg.create_task(u.run(), name=f"uplink[{u.config.name}]") for u in gateway.uplinks]
                    tasks += [tg.create_task(s.run(), name=f"sink[{s.config.name}]") for s in gateway.sinks]
                    tasks.append(tg.create_task(gateway._tick(), name="twins.tick"))
                    tasks.append(tg.create_task(audit.run(), name="audit.checkpoints"))
                    tasks += [
                        tg.create_task(gateway._supervise(name, run), name=name) for name, run in gateway.services()
                    ]
                    tls = await asyncio.to_thread(server_context, config.http, config.state_dir)
                    site = web.TCPSite(runner, config.http.host, config.http.port, ssl_context=tls)
                    await site.start()
                    gateway.http_url = _url(runner, config.http.host, "http" if tls is None else "https")
                    if notifier.watchdog_interval:
                        watchdog = gateway._watchdog(notifier.watchdog_interval)
                        tasks.append(tg.create_task(watchdog, name="systemd.watchdog"))
                    notifier.ready(gateway.status_line())
                    logger.info("gateway %s running; status at %s/status", config.site.id, gateway.http_url)
                    try:
                        yield gateway
                    finally:
                        notifier.stopping()
                        for task in tasks:
                            task.cancel()
            finally:
                await runner.cleanup()
            await journal.flush()
            try:
                await audit.checkpoint()  # the last entries end up covered by a signed checkpoint
                await journal.flush()
            except Exception:
                logger.exception("could not sign the final audit checkpoint")
            logger.info("gateway %s stopped; journal at seq %d", config.site.id, journal.next_seq)

    def services(self) -> list[tuple[str, Callable[[], Coroutine[None, None, None]]]]:
        """Consumers of twins and journal that run beside the drivers (task name, coroutine factory).

        Each is built from its own config section, imports its heavy libraries only when configured,
        and ends when cancelled.
        """
        services: list[tuple[str, Callable[[], Coroutine[None, None, None]]]] = []
        if self.config.anomaly.enabled and self.config.anomaly.detectors:
            from avila_edge.anomaly.service import AnomalyService  # noqa: PLC0415 - numpy/onnxruntime when configured

            anomaly = AnomalyService(self.config, self.twins, self.pipeline.record, clock=self.clock)
            services.append(("anomaly", anomaly.run))
        if self.config.north.opcua is not None or self.config.north.mqtt is not None:
            from avila_edge import north  # noqa: PLC0415 - asyncua/aiomqtt when configured

            found, self.north = north.services(self.config, twins=self.twins, journal=self.journal,
                                               record=self.pipeline.record, clock=self.clock)  # fmt: skip
            services += found
        return services

    async def _supervise(self, name: str, run: Callable[[], Coroutine[None, None, None]]) -> None:
        """Run a service; when it fails (a port taken, a certificate refused...), log it, show it in
        ``/healthz`` and start it again with backoff: the drivers and the journal keep going."""
        backoff = Backoff(SERVICE_BACKOFF[0], SERVICE_BACKOFF[1])
        while True:
            started = self.clock.monotonic()
            try:
                await run()
                reason = "ended by itself"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                logger.exception("%s failed; the rest of the gateway keeps running", name)
            self.service_problems[name] = reason
            if self.clock.monotonic() - started > SERVICE_HEALTHY_AFTER:
                backoff.reset()
            delay = backoff.next_delay()
            logger.warning("%s starting again in %.1f s after: %s", name, delay, reason)
            await self.clock.sleep(delay)
            self.service_problems.pop(name, None)

    def north_stats(self) -> dict[str, NorthStats]:
        """The counters of the northbound endpoints configured (empty when none)."""
        return {name: endpoint.counters() for name, endpoint in self.north.items()}

    def request_reload(self, reload: Reload) -> None:
        """Ask whoever runs this gateway to restart it on another configuration (a fleet bundle)."""
        self.reload = reload
        self.reload_requested.set()

    async def _restore(self) -> None:
        latest = await self.journal.latest_readings()
        events = []
        position = self.journal.first_seq
        while True:
            batch = await self.journal.read(position, 5000, kinds=[EntryKind.EVENT])
            if not batch:
                break
            events += [e.event() for e in batch if e.point is None]
            position = batch[-1].seq + 1
        self.twins.restore(latest, [e for e in events if e.kind in ("desired", "alarm")])
        self.pipeline.restore(latest)

    async def write(self, point: str, value: Value) -> None:
        """Write a value to the device that owns ``point`` (used by twins for desired values)."""
        slot = self.pipeline.slots.get(point)
        sup = None if slot is None else self._owner.get(slot.device.id)
        if sup is None:
            raise DeviceRejected("gateway", f"write {point}", "no enabled device has this point")
        await sup.driver.write(point, value)

    async def _tick(self) -> None:
        while True:
            await self.clock.sleep(TICK)
            events = self.twins.tick(self.clock.now_ns() / 1e9)
            if events:
                await self.pipeline.record(events)

    async def _watchdog(self, interval: float) -> None:
        while True:
            try:
                async with asyncio.timeout(WATCHDOG_FLUSH_LIMIT):
                    await self.journal.flush()
            except TimeoutError:
                logger.error(  # noqa: TRY400 - a stall, not an exception worth a traceback
                    "journal has not committed for %.0f s: withholding the watchdog ping", WATCHDOG_FLUSH_LIMIT
                )
            else:
                self._last_watchdog_ok = time.monotonic()
                self.notifier.watchdog()
                self.notifier.status(self.status_line())
            await asyncio.sleep(interval)

    def status_line(self) -> str:
        up = sum(1 for s in self.supervisors if s.driver.health().connected)
        return (
            f"{len(self.point_ids)} points, {up}/{len(self.supervisors)} devices connected, seq {self.journal.next_seq}"
        )

    def health_problems(self) -> list[str]:
        problems = []
        stats = self.journal.stats()
        if stats.bytes > self.config.journal.max_bytes * 1.05:
            problems.append("journal is full")
        if time.monotonic() - self._last_watchdog_ok > 3 * WATCHDOG_FLUSH_LIMIT and self.notifier.watchdog_interval:
            problems.append("journal is not committing")
        problems += [f"{name} failed: {why}" for name, why in sorted(self.service_problems.items())]
        return problems


def _url(runner: web.AppRunner, host: str, scheme: str) -> str:
    port = runner.addresses[0][1] if runner.addresses else 0
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a display name, not a bind
    return f"{scheme}://{shown}:{port}"
