"""Console sessions and login lockout, both in memory.

- ``Sessions`` are server-side (random 32-byte ids, a CSRF secret each) and end after ``idle`` seconds
  without a request, at logout, when the user is removed, or when the gateway restarts.
- ``Lockout`` refuses logins for a user or a client address after 5 failures within 15 minutes.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator", "admin"]
LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = 15 * 60.0
MAX_SESSIONS = 10_000
MAX_TRACKED_CLIENTS = 10_000


@dataclass
class Session:
    id: str
    user: str
    role: Role
    csrf: str
    last_seen: float


class Sessions:
    """Console logins, in memory; a session ends after ``idle`` seconds without a request."""

    def __init__(self, idle: float, *, now: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self._now = now
        self._by_id: dict[str, Session] = {}

    def create(self, user: str, role: Role) -> Session:
        if len(self._by_id) >= MAX_SESSIONS:
            self._expire()
            if len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id.values(), key=lambda s: s.last_seen)
                del self._by_id[oldest.id]
        s = Session(secrets.token_hex(32), user, role, secrets.token_hex(32), self._now())
        self._by_id[s.id] = s
        return s

    def get(self, session_id: str) -> Session | None:
        s = self._by_id.get(session_id)
        if s is None:
            return None
        now = self._now()
        if now - s.last_seen > self.idle:
            del self._by_id[session_id]
            return None
        s.last_seen = now
        return s

    def end(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def end_user(self, user: str) -> None:
        for s in [s for s in self._by_id.values() if s.user == user]:
            del self._by_id[s.id]

    def _expire(self) -> None:
        now = self._now()
        for s in [s for s in self._by_id.values() if now - s.last_seen > self.idle]:
            del self._by_id[s.id]


class Lockout:
    """Failed login attempts per key (``user:<name>``, ``addr:<ip>``) within a sliding window."""

    def __init__(
        self,
        *,
        failures: int = LOCKOUT_FAILURES,
        window: float = LOCKOUT_WINDOW,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self._now = now
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for these keys is accepted again (0: now)."""
        now = self._now()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.failures:
                wait = max(wait, times[-self.failures] + self.window - now)
        return wait

    def fail(self, *keys: str) -> None:
        now = self._now()
        if len(self._seen) >= MAX_TRACKED_CLIENTS:
            for key in list(self._seen):
                self._recent(key, now)
        for key in keys:
            self._seen.setdefault(key, deque(maxlen=self.failures)).append(now)

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[key]
        return times
