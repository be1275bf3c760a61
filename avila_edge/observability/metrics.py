"""Prometheus/OpenMetrics exposition, read from live state at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from avila_edge.north import counters as north

if TYPE_CHECKING:
    from avila_edge.runtime.gateway import Gateway


class GatewayCollector(Collector):
    def __init__(self, gateway: Callable[[], Gateway]) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        g = self._gateway()
        p = g.pipeline.counters
        yield _counter("avila_edge_readings_accepted", "Readings committed to the journal", p.accepted)
        yield _counter("avila_edge_readings_filtered", "Readings dropped by deadband or as repeats", p.filtered)
        yield _counter("avila_edge_readings_rejected", "Readings for points not in the configuration", p.rejected)
        yield _counter("avila_edge_events", "Twin events journaled (alarms, write outcomes)", p.events)
        s = g.journal.stats()
        yield _gauge("avila_edge_journal_next_seq", "One past the last committed journal seq", s.next_seq)
        yield _gauge("avila_edge_journal_bytes", "Bytes the journal uses on disk", s.bytes)
        yield _gauge("avila_edge_journal_entries", "Entries stored in the journal", s.entries)
        yield _counter("avila_edge_journal_retired", "Entries removed after every cursor passed them", s.retired)
        yield _counter("avila_edge_journal_dropped", "Unsynced readings dropped at the disk cap", s.dropped)
        yield _counter("avila_edge_journal_gaps", "Gap events recorded for dropped readings", s.gaps)
        lag = GaugeMetricFamily(
            "avila_edge_cursor_lag", "Entries a journal cursor has not processed", labels=["cursor"]
        )
        for name, cursor in sorted(g.journal.cursors().items()):
            lag.add_metric([name], cursor.lag)
        yield lag
        errors = CounterMetricFamily("avila_edge_driver_errors", "Driver errors by kind", labels=["device", "kind"])
        connected = GaugeMetricFamily(
            "avila_edge_driver_connected", "1 when the driver's link is up", labels=["device"]
        )
        poll = GaugeMetricFamily(
            "avila_edge_poll_duration_seconds", "Duration of the last poll cycle", labels=["device"]
        )
        requests = CounterMetricFamily("avila_edge_driver_requests", "Requests sent to the device", labels=["device"])
        restarts = CounterMetricFamily(
            "avila_edge_driver_restarts", "Driver restarts by the supervisor", labels=["device"]
        )
        last_success = GaugeMetricFamily(
            "avila_edge_driver_last_success_timestamp_seconds",
            "Unix time of the device's last successful exchange (absent until it first answers)",
            labels=["device"],
        )
        for sup in g.supervisors:
            h = sup.driver.health()
            for kind, n in sorted(h.errors.items()):
                errors.add_metric([h.device, kind], n)
            connected.add_metric([h.device], 1.0 if h.connected else 0.0)
            poll.add_metric([h.device], h.last_poll_seconds)
            requests.add_metric([h.device], h.requests)
            restarts.add_metric([h.device], sup.restarts)
            if h.last_success_ns is not None:
                last_success.add_metric([h.device], h.last_success_ns / 1e9)
        yield from (errors, connected, poll, requests, restarts, last_success)
        yield from _uplink_families(g)
        quality = GaugeMetricFamily("avila_edge_points", "Configured points by current quality", labels=["quality"])
        counts = {"good": 0, "uncertain": 0, "bad": 0, "none": 0}
        for point in g.point_ids:
            r = g.pipeline.latest.get(point)
            counts["none" if r is None else r.quality.name.lower()] += 1
        for q, n in counts.items():
            quality.add_metric([q], n)
        yield quality
        alarms = GaugeMetricFamily("avila_edge_alarms_active", "Alarms active now (acknowledged or not)")
        alarms.add_metric([], sum(1 for a in g.twins.alarms() if a.active))
        yield alarms
        yield from _north(g.north_stats())


def _north(endpoints: dict[str, north.NorthStats]) -> Iterator[Metric]:
    """The northbound endpoints (label ``endpoint``: opcua, mqtt, sparkplug), only those configured."""
    label = ["endpoint"]
    connected = GaugeMetricFamily(
        "avila_edge_north_connected", "1 while the endpoint serves or is connected", labels=label
    )
    sessions = GaugeMetricFamily("avila_edge_north_sessions", "Client sessions open now (MQTT: 1 while connected)",
                                 labels=label)  # fmt: skip
    connects = CounterMetricFamily("avila_edge_north_connects", "Broker connections made, OPC UA logins accepted",
                                   labels=label)  # fmt: skip
    published = CounterMetricFamily("avila_edge_north_published", "Messages published, OPC UA value updates",
                                    labels=label)  # fmt: skip
    commands = CounterMetricFamily("avila_edge_north_commands", "Set commands received by outcome",
                                   labels=["endpoint", "outcome"])  # fmt: skip
    errors = CounterMetricFamily("avila_edge_north_errors", "Broker connection failures, refused OPC UA logins "
                                 "and client certificates", labels=label)  # fmt: skip
    for name, s in sorted(endpoints.items()):
        connected.add_metric([name], 1.0 if s.connected else 0.0)
        sessions.add_metric([name], s.sessions)
        connects.add_metric([name], s.connects)
        published.add_metric([name], s.published)
        accepted = s.commands - s.refused_commands - s.failed_commands
        for outcome, n in (("accepted", accepted), ("refused", s.refused_commands), ("failed", s.failed_commands)):
            commands.add_metric([name, outcome], n)
        errors.add_metric([name], s.errors)
    if endpoints:
        yield from (connected, sessions, connects, published, commands, errors)


def _uplink_families(g: Gateway) -> Iterator[Metric]:
    """Cloud uplinks and time-series sinks, labelled by their configured name (absent when none is)."""
    if not g.uplinks and not g.sinks:
        return
    up = GaugeMetricFamily("avila_edge_uplink_connected", "1 while the uplink's broker link is up", labels=["uplink"])
    batches = CounterMetricFamily("avila_edge_uplink_batches", "Batches confirmed by the far side", labels=["uplink"])
    entries = CounterMetricFamily("avila_edge_uplink_entries", "Journal entries confirmed", labels=["uplink"])
    sent = CounterMetricFamily("avila_edge_uplink_bytes", "Bytes of confirmed batches", labels=["uplink"])
    failures = CounterMetricFamily("avila_edge_uplink_errors", "Failed sends and link failures", labels=["uplink"])
    for u in g.uplinks:
        s = u.stats()
        up.add_metric([s.name], 1.0 if s.connected else 0.0)
        batches.add_metric([s.name], s.batches)
        entries.add_metric([s.name], s.entries)
        sent.add_metric([s.name], s.bytes)
        failures.add_metric([s.name], s.errors)
    for sink in g.sinks:
        k = sink.stats()
        batches.add_metric([k.name], k.batches)
        entries.add_metric([k.name], k.written)
        failures.add_metric([k.name], k.errors)
    yield from (up, batches, entries, sent, failures)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def registry_for(gateway: Callable[[], Gateway]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway))
    return registry
