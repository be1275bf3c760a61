"""What the detectors have learned, kept across restarts in one file of the state directory.

``<state_dir>/anomaly-state.msgpack`` holds, per (asset, detector): the baseline's streaming means,
variances and window count, the threshold's learned value, the normal scores it learns from and its
hysteresis counters, whether an anomaly is active and since when, the detector's last judgement shown
in the twin, and the ``Settings`` it was learned under (detector kind, model version, features,
window, threshold settings).

The service writes the file every ``anomaly.state_save_interval`` and at shutdown, on a worker
thread: a temporary file, fsync, rename, fsync of the folder. A crash (power cut, ``kill -9``) leaves
the previous file or the new one, never a torn one, and so loses at most one interval of learning.

On start an entry is restored only onto a detector with the same ``Settings``; any other entry is
discarded and the log says what changed. An unreadable file is logged and ignored (the detectors
learn again), never fatal.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import msgspec

from avila_edge.anomaly.detectors import AdaptiveThreshold, BaselineMemory, ThresholdMemory
from avila_edge.core.files import write_private

logger = logging.getLogger(__name__)

STATE_FILE = "anomaly-state.msgpack"
FORMAT = 1


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything a detector's learning depends on: a change of any of these makes it start over."""

    detector: str
    model: str | None
    features: tuple[str, ...]
    window: float
    quantile: float
    margin: float
    warmup: int
    history: int
    manual: float | None
    raise_after: int
    clear_after: int
    clear_ratio: float

    @classmethod
    def of(
        cls, *, detector: str, model: str | None, features: list[str], window: float, threshold: AdaptiveThreshold
    ) -> Settings:
        t = threshold
        return cls(
            detector, model, tuple(features), window, t.quantile, t.margin, t.warmup, t.history, t.manual,
            t.raise_after, t.clear_after, t.clear_ratio,
        )  # fmt: skip

    def changes(self, now: Settings) -> list[str]:
        """What differs from ``now``, as ``key saved → now``."""
        before, after = msgspec.structs.asdict(self), msgspec.structs.asdict(now)
        return [f"{key} {before[key]!r} → {after[key]!r}" for key in before if before[key] != after[key]]


class DetectorState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    asset: str
    detector: str
    settings: Settings
    windows: int
    since: int | None
    threshold: ThresholdMemory
    baseline: BaselineMemory | None
    twin: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.asset, self.detector


class StateFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: int
    saved: int
    detectors: list[DetectorState]


class StateStore:
    """The state file; ``load`` and ``save`` block (file I/O, fsync): call them from a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writing = threading.Lock()  # a periodic save still running when the shutdown save starts

    def load(self) -> dict[tuple[str, str], DetectorState]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.error("%s: cannot read the saved anomaly state (%s); detectors learn again", self.path, exc)  # noqa: TRY400
            return {}
        try:
            saved = msgspec.msgpack.decode(raw, type=StateFile)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            logger.error("%s: unreadable anomaly state (%s); detectors learn again", self.path, exc)  # noqa: TRY400
            return {}
        if saved.format != FORMAT:
            logger.error(
                "%s: anomaly state format %d is not %d; detectors learn again", self.path, saved.format, FORMAT
            )
            return {}
        return {d.key: d for d in saved.detectors}

    def save(self, detectors: list[DetectorState], saved_ns: int) -> None:
        data = msgspec.msgpack.encode(StateFile(FORMAT, saved_ns, detectors))
        with self._writing:
            write_durably(self.path, data)


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably (see ``avila_edge.core.files``)."""
    write_private(path, data)
