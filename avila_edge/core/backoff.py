"""Exponential backoff with full jitter, shared by drivers (reconnect) and the supervisor (restart)."""

from __future__ import annotations

import random


class Backoff:
    """Delays that grow ``initial * factor**n`` up to ``maximum``, each drawn uniformly from
    ``[delay/2, delay]`` so that many gateways (or devices) do not retry in lock-step."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 60.0,
        factor: float = 2.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next retry; each call counts one more failure."""
        ceiling = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Forget past failures (call after a success)."""
        self._attempt = 0
