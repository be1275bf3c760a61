"""HistoryRead for the OPC UA server: an asyncua history backend that reads the journal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from asyncua import ua
from asyncua.server.history import HistoryStorageInterface

from avila_edge.journal import Journal
from avila_edge.north.opcua_values import STATUS_NAMES, data_value, to_datetime, to_ns


class JournalHistory(HistoryStorageInterface):
    """asyncua history backend that reads raw values of points from the journal (nothing is stored
    twice: the journal already holds every accepted reading)."""

    def __init__(self, journal: Journal, points: Mapping[ua.NodeId, str], max_values: int) -> None:
        super().__init__(max_values)
        self._journal = journal
        self._points = dict(points)
        self._names = STATUS_NAMES

    async def init(self) -> None:
        return None

    async def new_historized_node(self, node_id: ua.NodeId, period: dt.timedelta | None, count: int = 0) -> None:
        return None

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        return None

    async def read_node_history(
        self, node_id: ua.NodeId, start: dt.datetime | None, end: dt.datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], dt.datetime | None]:
        point = self._points.get(node_id)
        if point is None:
            return [], None
        start_ns = to_ns(start) or 0
        end_ns = to_ns(end) or (1 << 62)
        limit = min(nb_values or self.max_history_data_response_size, self.max_history_data_response_size)
        readings = await self._journal.history(point, start_ns, end_ns + 1, limit=limit + 1)
        more = None
        if len(readings) > limit:
            more = to_datetime(readings[limit].ts_gateway)
            readings = readings[:limit]
        return [
            data_value(r.value, r.quality, r.reason, r.ts_source, r.ts_gateway, self._names) for r in readings
        ], more

    async def new_historized_event(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def save_event(self, event: Any) -> None:
        return None

    async def read_event_history(self, *args: Any, **kwargs: Any) -> tuple[list[Any], None]:
        return [], None

    async def stop(self) -> None:
        return None


__all__ = ["JournalHistory"]
