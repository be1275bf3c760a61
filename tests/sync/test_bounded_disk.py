"""A gateway offline long enough to reach its disk cap: the oldest never-synced readings go, events
stay, each drop is a gap event with its seq range, and /metrics counts them."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from avila_edge.config import parse_config
from avila_edge.core import Event, Reading, SystemClock
from avila_edge.journal import EntryKind
from avila_edge.runtime.gateway import Gateway
from hil.mosquitto import free_port

SITE = """
site: {{id: gw1}}
state_dir: {state}
http: {{host: 127.0.0.1, port: 0}}
journal: {{max_bytes: 1MiB}}
uplinks:
  - {{host: 127.0.0.1, port: {port}, plaintext: true, reconnect_max: 1s}}   # nothing listens: offline
"""


async def test_an_offline_gateway_at_its_disk_cap_drops_oldest_readings_keeps_events_and_counts_it(
    tmp_path: Path,
) -> None:
    config = parse_config(SITE.format(state=tmp_path, port=free_port()), filename="site.yaml")
    async with Gateway.running(config, clock=SystemClock(), plugins={}) as gateway:
        journal = gateway.journal
        alarm = await journal.append_events([Event(kind="alarm", source="pump1/hot", ts=1)])
        for i in range(30):
            now = SystemClock().now_ns()
            await journal.append(
                [
                    Reading(point="pump1/flow", value=float(i * 1000 + k), ts_source=now, ts_gateway=now)
                    for k in range(1000)
                ]
            )
        await journal.retain()
        stats = journal.stats()
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.http_url}/metrics") as r:
            assert r.status == 200
            text = await r.text()
        events = [e.event() for e in await journal.read(0, 100_000, kinds=[EntryKind.EVENT])]
        kept = [e.seq for e in await journal.read(0, 100_000, kinds=[EntryKind.READING])]
        lag = journal.cursors()["uplink:cloud:readings"].position
    metrics = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    assert stats.dropped > 0 and stats.bytes <= 1 << 20
    assert metrics["avila_edge_journal_dropped_total"] == stats.dropped
    assert metrics["avila_edge_journal_gaps_total"] == stats.gaps >= 1
    assert events[0].seq == alarm[0].seq and events[0].kind == "alarm"  # the event survived the cap
    gaps = [e for e in events if e.kind == "gap"]
    covered = {s for g in gaps for s in range(int(g.attrs["first_seq"]), int(g.attrs["last_seq"]) + 1)}
    assert sum(int(g.attrs["count"]) for g in gaps) == stats.dropped
    assert min(covered) == 1 and max(covered) < min(kept)  # the oldest readings went first
    assert all(g.attrs["cursors"] for g in gaps)  # each gap names the uplink that never got them
    assert lag == 0
