"""Writes readings to a time-series database through the InfluxDB v2 write API; a journal cursor that
advances only after the server answered success."""

from __future__ import annotations

import logging
from typing import Any, cast
from urllib.parse import urlparse

import msgspec

from avila_edge.config.model import GatewayConfig
from avila_edge.config.sync import InfluxSinkConfig
from avila_edge.core import Backoff, Clock, GatewayError
from avila_edge.core.net import is_loopback
from avila_edge.journal import EntryKind, Journal
from avila_edge.sync.lineprotocol import to_line

logger = logging.getLogger(__name__)


class SinkStats(msgspec.Struct, frozen=True):
    name: str
    written: int
    batches: int
    errors: int
    lag: int
    last_error: str


class InfluxSink:
    def __init__(
        self, config: InfluxSinkConfig, gateway: GatewayConfig, *, journal: Journal, clock: Clock, token: str = ""
    ) -> None:
        host = urlparse(config.url).hostname or ""
        if urlparse(config.url).scheme != "https" and not is_loopback(host) and not config.plaintext:
            raise GatewayError(f"sink {config.name}: {config.url} is not https; set plaintext: true to allow it")
        self.config = config
        self.site = gateway.site.id
        self.measurements = {a.id: a.type for a in gateway.assets if a.type}
        self.journal = journal
        self.clock = clock
        self._token = token
        self._written = self._batches = self._errors = 0
        self._last_error = ""
        self._lag = 0

    def stats(self) -> SinkStats:
        return SinkStats(self.config.name, self._written, self._batches, self._errors, self._lag, self._last_error)

    async def run(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync  # noqa: PLC0415
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415 - 40 MB: loaded only when used

        cursor = await self.journal.cursor(f"sink:{self.config.name}")
        backoff = Backoff(0.5, 60.0)
        c = self.config
        async with InfluxDBClientAsync(
            url=c.url, token=self._token, org=c.org, timeout=int(c.timeout * 1000)
        ) as client:
            api = client.write_api()
            while True:
                self._lag = cursor.lag
                entries = await self.journal.read(cursor.position, c.batch_max, kinds=[EntryKind.READING])
                if not entries:
                    if cursor.position < self.journal.next_seq:
                        await cursor.commit(self.journal.next_seq)
                    await self.journal.wait_beyond(self.journal.next_seq - 1)
                    continue
                lines = [to_line(e.reading(), site=self.site, measurements=self.measurements) for e in entries]
                try:
                    await api.write(
                        bucket=c.bucket, org=c.org, record=lines, write_precision=cast(Any, WritePrecision.NS)
                    )
                except Exception as exc:  # any failure means: not confirmed, retry later
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"[:300]
                    delay = backoff.next_delay()
                    logger.warning("sink %s: write failed (%s); retrying in %.1f s", c.name, self._last_error, delay)
                    await self.clock.sleep(delay)
                    continue
                backoff.reset()
                await cursor.commit(entries[-1].seq + 1)
                self._written += len(entries)
                self._batches += 1
