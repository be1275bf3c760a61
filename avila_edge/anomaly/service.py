"""The anomaly service: twin updates → feature windows → scores → anomaly events, journaled and shown.

Tasks (owned by ``run``'s TaskGroup)::

    anomaly.feed     twin changes → windows per asset and detector; the baseline scores inline (µs)
    anomaly.infer    ONNX windows, batched across assets, scored on one worker thread
    anomaly.reload   follows activate/rollback in the registry; a refused model leaves the old one running
    anomaly.save     saves what the detectors have learned every ``state_save_interval`` (``state.py``)

What each detector has learned (baseline, threshold, active anomaly) survives a restart: it is saved
to ``<state_dir>/anomaly-state.msgpack`` on a worker thread and restored on start onto detectors with
unchanged settings, so an anomaly active before a restart stays active without a second ``start``.

At most ``anomaly.queue`` windows wait for inference: more are skipped and counted
(``counters.skipped_overload``), and a window that waited longer than ``max_latency`` is skipped
(``skipped_stale``), so an overloaded gateway falls behind by a bounded amount and says so. A model
that fails at run time loses only the windows it fails on (``failed``; a failed batch is retried one
window at a time), and other models and assets go on being scored.

Journaled events (``Pipeline.record``):

* ``kind="anomaly"``, ``source="<asset>/<detector>"``, ``ts`` = end of the window (ns), attrs
  ``state`` (``start``/``clear``), ``score``, ``threshold``, ``detector`` (``baseline``/``onnx``),
  ``model`` (``name@version`` or None), ``window_start``/``window_end`` (ns), ``top`` (list of
  ``{feature, share, value, expected}``, largest share first).
* ``kind="anomaly_model"``, ``source="model/<name>"``, attrs ``state`` (``loaded``/``refused``/
  ``mismatch``), ``model``, ``reason``; a ``mismatch`` (a detector's configured features differ from
  the model's) also names the ``detector`` and its ``assets``, which stay idle. The twins of idle
  detectors show the reason as ``problem``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avila_edge.anomaly.detectors import AdaptiveThreshold, Baseline, Scored, Transition, explain
from avila_edge.anomaly.manifest import ModelRefused
from avila_edge.anomaly.onnx_model import OnnxModel
from avila_edge.anomaly.registry import ModelRegistry
from avila_edge.anomaly.state import STATE_FILE, DetectorState, Settings, StateStore
from avila_edge.anomaly.windows import Window, WindowBuilder
from avila_edge.config.anomaly import DetectorConfig, DetectorKind, FeatureConfig
from avila_edge.config.model import GatewayConfig
from avila_edge.core import Clock, Event, Quality
from avila_edge.twins.service import TwinChange, TwinService

logger = logging.getLogger(__name__)

Record = Callable[[Sequence[Event]], Awaitable[None]]
DEFAULT_WINDOW = 10.0
BASELINE_WARMUP = 60
BASELINE_HISTORY = 2000
FAILURE_LOG_INTERVAL = 60.0
"""A model failing at run time is logged at most once per this many seconds (with the count since)."""


@dataclass(slots=True)
class AnomalyCounters:
    windows: int = 0
    scored: int = 0
    batches: int = 0
    skipped_overload: int = 0
    skipped_stale: int = 0
    failed: int = 0
    anomalies: int = 0
    refused_models: int = 0
    restored: int = 0
    discarded: int = 0
    saves: int = 0
    save_failed: int = 0


@dataclass(slots=True)
class _Watch:
    """One detector on one asset."""

    asset: str
    config: DetectorConfig
    builder: WindowBuilder
    threshold: AdaptiveThreshold
    baseline: Baseline | None = None
    model: OnnxModel | None = None
    seen: dict[str, int] = field(default_factory=dict)
    since: int | None = None
    windows: int = 0

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.builder.features]

    @property
    def key(self) -> tuple[str, str]:
        return self.asset, self.config.id

    def settings(self) -> Settings:
        return Settings.of(
            detector=self.config.detector.value,
            model=self.model.manifest.ref if self.model else None,
            features=self.names,
            window=self.builder.window,
            threshold=self.threshold,
        )

    def state(self, twin: dict[str, object]) -> DetectorState:
        baseline = self.baseline.memory() if self.baseline is not None else None
        memory = self.threshold.memory()
        return DetectorState(*self.key, self.settings(), self.windows, self.since, memory, baseline, twin)


@dataclass(frozen=True, slots=True)
class _Job:
    watch: _Watch
    model: OnnxModel
    window: Window
    queued: float


def registry_of(config: GatewayConfig) -> ModelRegistry:
    root = config.anomaly.registry or Path("models")
    return ModelRegistry(root if root.is_absolute() else config.state_dir / root)


class AnomalyService:
    def __init__(
        self,
        config: GatewayConfig,
        twins: TwinService,
        record: Record,
        *,
        clock: Clock,
        registry: ModelRegistry | None = None,
    ) -> None:
        self.config = config.anomaly
        self.twins = twins
        self.record = record
        self.clock = clock
        self.registry = registry or registry_of(config)
        self.store = StateStore(config.state_dir / STATE_FILE)
        self.counters = AnomalyCounters()
        self.models: dict[str, OnnxModel] = {}
        self._stamps: dict[str, float] = {}
        self._targets = _targets(config)
        self._watches: dict[str, list[_Watch]] = {}
        self._pending: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._saved: dict[tuple[str, str], DetectorState] = {}  # loaded, not (yet) restored onto a detector
        self._changes = 0  # windows judged: a save is due when this moved
        self._saved_changes = 0
        self._failures: dict[str, tuple[float, int]] = {}  # model → (last logged, failed windows unlogged)
        self.started = asyncio.Event()
        """Set once ``run`` has restored state, loaded models and listens to the twins."""
        for asset, d in self._targets:
            if d.detector is DetectorKind.BASELINE:
                self._add(_baseline_watch(asset, d))

    # -- running ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore what was learned before, load every model the detectors name (off the event loop) and
        journal what happened."""
        self._saved = await asyncio.to_thread(self.store.load)
        for watches in self._watches.values():
            for watch in watches:
                self._recall(watch)
        names = sorted({d.model for _, d in self._targets if d.detector is DetectorKind.ONNX and d.model})
        for name in names:
            await self.load_model(name)
        idle = {(asset, d.id) for asset, d in self._targets if d.detector is DetectorKind.ONNX}
        for key in sorted(set(self._saved) - idle):  # kept for an idle ONNX detector whose model may come
            self.counters.discarded += 1
            logger.warning("%s/%s: saved anomaly state discarded: no such detector on this asset any more", *key)
            del self._saved[key]

    async def run(self) -> None:
        await self.start()
        changes = self.twins.subscribe()
        self.started.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(changes), name="anomaly.feed")
                tg.create_task(self._infer(), name="anomaly.infer")
                tg.create_task(self._save_every(), name="anomaly.save")
                if self.models or any(d.model for _, d in self._targets):
                    tg.create_task(self._reload(), name="anomaly.reload")
        finally:
            self.twins.unsubscribe(changes)
            try:
                await self.save()  # at shutdown, and before an in-process restart on a new configuration
            finally:
                self.close()

    @property
    def incomplete(self) -> int:
        """Windows skipped because a feature had no value (see ``windows.py``), over all assets."""
        return sum(w.builder.incomplete for watches in self._watches.values() for w in watches)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _feed(self, changes: asyncio.Queue[TwinChange]) -> None:
        while True:
            assets = {(await changes.get()).asset}
            while not changes.empty():  # take every change already waiting: one record() for all
                assets.add(changes.get_nowait().asset)
            events: list[Event] = []
            for asset in assets:
                events += self.observe(asset)
            if events:
                await self.record(events)

    async def _infer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                events = await self.infer_pending()
                if events:
                    await self.record(events)

    async def _save_every(self) -> None:
        interval = self.config.state_save_interval if self.config.state_save_interval > 0 else 60.0
        while True:
            await self.clock.sleep(interval)
            await self.save()

    async def save(self) -> None:
        """Write what every detector has learned (a worker thread; skipped when nothing was judged since)."""
        if self._changes == self._saved_changes:
            return
        changes = self._changes
        states = self.states()
        try:
            await asyncio.to_thread(self.store.save, states, self.clock.now_ns())
        except OSError as exc:
            self.counters.save_failed += 1
            logger.error("cannot save the anomaly state to %s: %s", self.store.path, exc)  # noqa: TRY400
            return
        self._saved_changes = changes
        self.counters.saves += 1

    def states(self) -> list[DetectorState]:
        """A copy of what every detector has learned (taken on the loop in µs; written elsewhere)."""
        out = [
            w.state(dict(self.twins.snapshot(w.asset)["anomaly"].get(w.config.id, {})))  # type: ignore[attr-defined]
            for watches in self._watches.values()
            for w in watches
        ]
        return out + list(self._saved.values())  # idle detectors keep what they had learned

    def _recall(self, watch: _Watch) -> None:
        """Continue from the saved state of this (asset, detector) if it was learned under the same settings."""
        saved = self._saved.pop(watch.key, None)
        if saved is None:
            return
        asset, detector = watch.key
        now = watch.settings()
        if saved.settings != now:
            self.counters.discarded += 1
            logger.warning("%s/%s: saved anomaly state discarded, the detector changed: %s", asset, detector,
                           "; ".join(saved.settings.changes(now)))  # fmt: skip
            return
        before = watch.threshold.memory(), watch.baseline.memory() if watch.baseline else None
        try:
            if watch.baseline is not None:
                if saved.baseline is None:
                    raise ValueError("no baseline saved")  # noqa: TRY301 - one handler for every bad state
                watch.baseline.recall(saved.baseline)
            watch.threshold.recall(saved.threshold)
        except ValueError as exc:
            watch.threshold.recall(before[0])
            if watch.baseline is not None and before[1] is not None:
                watch.baseline.recall(before[1])
            self.counters.discarded += 1
            logger.warning("%s/%s: saved anomaly state discarded: %s", asset, detector, exc)
            return
        watch.windows, watch.since = saved.windows, saved.since
        if saved.twin:
            self.twins.set_anomaly(asset, detector, dict(saved.twin), notify=False)
        self.counters.restored += 1
        learned = f"threshold {watch.threshold.value:.4g}" if watch.threshold.learned else "still learning"
        active = ", anomaly active" if watch.threshold.active else ""
        logger.info("%s/%s: restored after %d windows (%s%s)", asset, detector, saved.windows, learned, active)

    async def _reload(self) -> None:
        while True:
            await self.clock.sleep(self.config.reload_interval)
            for name in sorted({d.model for _, d in self._targets if d.model}):
                stamp = await asyncio.to_thread(self.registry.stamp, name)
                if stamp != self._stamps.get(name):
                    await self.load_model(name)

    # -- windows ----------------------------------------------------------------------------------

    def observe(self, asset: str) -> list[Event]:
        """Take the asset's new point values into its windows; score baseline windows now, queue ONNX ones."""
        watches = self._watches.get(asset)
        if not watches:
            return []
        state = self.twins.state(asset)
        events: list[Event] = []
        for watch in watches:
            fresh: list[tuple[int, str, float]] = []
            for point in watch.builder.points:
                r = state.reported.get(point) or state.derived.get(point)
                if r is None or r.quality is not Quality.GOOD or not isinstance(r.value, int | float):
                    continue
                if r.ts_gateway > watch.seen.get(point, -1):
                    watch.seen[point] = r.ts_gateway
                    fresh.append((r.ts_gateway, point, float(r.value)))
            for ts, point, value in sorted(fresh):
                w = watch.builder.add(point, value, ts / 1e9)
                if w is not None:
                    events += self.window(watch, w)
        return events

    def window(self, watch: _Watch, w: Window) -> list[Event]:
        """A closed window: judged at once by the baseline, queued for the model otherwise."""
        self.counters.windows += 1
        if watch.baseline is not None:
            return self._judge(watch, w, watch.baseline.score(w.row))
        if watch.model is None:
            return []
        if len(self._pending) >= self.config.queue:
            self.counters.skipped_overload += 1
            return []
        self._pending.append(_Job(watch, watch.model, w, self.clock.monotonic()))
        self._wake.set()
        return []

    async def infer_pending(self) -> list[Event]:
        """Score up to ``batch_max`` queued windows in one worker-thread call (one batch per model)."""
        jobs = [self._pending.popleft() for _ in range(min(self.config.batch_max, len(self._pending)))]
        now = self.clock.monotonic()
        fresh = [j for j in jobs if now - j.queued <= self.config.max_latency]
        self.counters.skipped_stale += len(jobs) - len(fresh)
        if not fresh:
            return []
        groups: dict[int, list[_Job]] = {}
        for j in fresh:
            groups.setdefault(id(j.model), []).append(j)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="anomaly.infer")
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, _score_groups, list(groups.values()))
        except Exception:  # onnxruntime's own runtime errors: lose these windows, not the gateway
            self.counters.failed += len(fresh)
            logger.exception("inference failed on %d windows; they are skipped", len(fresh))
            return []
        self.counters.batches += len(groups)
        events: list[Event] = []
        for group, (scored, error) in zip(groups.values(), results, strict=True):
            for job, s in zip(group, scored, strict=True):
                if job.watch.model is not job.model:  # a model swapped meanwhile makes its old scores moot
                    continue
                if s is None:
                    self._failed(job.watch, error or "")
                else:
                    events += self._judge(job.watch, job.window, s)
            if error is not None:
                self._log_failure(group, sum(1 for s in scored if s is None), error)
        return events

    def _failed(self, watch: _Watch, error: str) -> None:
        """A window the model failed on: counted and shown in the twin; the threshold does not see it."""
        self.counters.failed += 1
        shown = self.twins.snapshot(watch.asset)["anomaly"].get(watch.config.id)  # type: ignore[attr-defined]
        info = dict(shown) if shown else self._blank_info(watch)
        info["problem"] = f"inference failed: {error}"
        self.twins.set_anomaly(watch.asset, watch.config.id, info, notify=False)

    def _log_failure(self, group: list[_Job], failed: int, error: str) -> None:
        ref = group[0].model.manifest.ref
        now = self.clock.monotonic()
        logged, unlogged = self._failures.get(ref, (-math.inf, 0))
        unlogged += failed
        if now - logged < FAILURE_LOG_INTERVAL:
            self._failures[ref] = logged, unlogged
            return
        assets = ", ".join(sorted({j.watch.asset for j in group}))
        logger.error("model %s failed at run time on %d windows (%d since the last report; in this batch: %s): %s",
                     ref, failed, unlogged, assets, error)  # fmt: skip
        self._failures[ref] = now, 0

    def _judge(self, watch: _Watch, w: Window, scored: Scored | None) -> list[Event]:
        asset, detector = watch.asset, watch.config.id
        th = watch.threshold
        if scored is None:  # the baseline is still learning this asset
            assert watch.baseline is not None
            watch.baseline.learn(w.row)
            watch.windows += 1
            self._changes += 1
            self.twins.set_anomaly(asset, detector, self._info(watch, w, None), notify=False)
            return []
        self.counters.scored += 1
        watch.windows += 1
        self._changes += 1
        transition = th.update(scored.score)
        if watch.baseline is not None and not th.active and (th.value is None or scored.score <= th.value):
            watch.baseline.learn(w.row)
        end_ns = int(w.end * 1e9)
        if transition is Transition.START:
            watch.since = end_ns
            self.counters.anomalies += 1
        elif transition is Transition.CLEAR:
            watch.since = None
        info = self._info(watch, w, scored)
        self.twins.set_anomaly(asset, detector, info, notify=transition is not None)
        if transition is None:
            return []
        attrs = {
            "state": transition.value,
            "score": info["score"],
            "threshold": info["threshold"],
            "detector": watch.config.detector.value,
            "model": info["model"],
            "window_start": int(w.start * 1e9),
            "window_end": end_ns,
            "top": info["top"],
        }
        logger.log(
            logging.WARNING if transition is Transition.START else logging.INFO,
            "anomaly %s on %s/%s: score %.4g, threshold %.4g, top %s",
            transition.value, asset, detector, scored.score, th.value or 0.0,
            ", ".join(str(t["feature"]) for t in info["top"]),  # type: ignore[attr-defined]
        )  # fmt: skip
        return [Event(kind="anomaly", source=f"{asset}/{detector}", ts=end_ns, attrs=attrs)]

    def _info(self, watch: _Watch, w: Window, scored: Scored | None) -> dict[str, object]:
        th = watch.threshold
        return {
            "active": th.active,
            "since": watch.since,
            "detector": watch.config.detector.value,
            "model": watch.model.manifest.ref if watch.model else None,
            "score": None if scored is None else float(f"{scored.score:.6g}"),
            "threshold": None if th.value is None else float(f"{th.value:.6g}"),
            "learning": not th.learned,
            "window_end": int(w.end * 1e9),
            "top": [] if scored is None else explain(watch.names, w.row, scored, watch.config.explain),
            "problem": None,
        }

    def _blank_info(self, watch: _Watch) -> dict[str, object]:
        th = watch.threshold
        return {
            "active": th.active, "since": watch.since, "detector": watch.config.detector.value,
            "model": watch.model.manifest.ref if watch.model else None, "score": None,
            "threshold": None if th.value is None else float(f"{th.value:.6g}"), "learning": not th.learned,
            "window_end": None, "top": [], "problem": None,
        }  # fmt: skip

    def _idle(self, asset: str, d: DetectorConfig, model: str | None, problem: str) -> None:
        """Show in the twin why a detector is not scoring (its model refused, or features unlike the model's)."""
        info: dict[str, object] = {
            "active": False, "since": None, "detector": d.detector.value, "model": model, "score": None,
            "threshold": None, "learning": False, "window_end": None, "top": [], "problem": problem,
        }  # fmt: skip
        self.twins.set_anomaly(asset, d.id, info, notify=True)

    # -- models -----------------------------------------------------------------------------------

    async def load_model(self, name: str) -> None:
        """Load the active version of ``name`` (or fall back along its history); keep the current one if refused."""
        self._stamps[name] = await asyncio.to_thread(self.registry.stamp, name)
        current = self.models.get(name)
        events: list[Event] = []
        try:
            loaded = await asyncio.to_thread(self.registry.load_active, name)
        except (ModelRefused, OSError) as exc:  # OSError: an unreadable registry folder
            self.counters.refused_models += 1
            kept = f"; {current.manifest.ref} keeps running" if current else "; its detectors are idle"
            logger.error("model %s refused: %s%s", name, exc, kept)  # noqa: TRY400 - refused, not crashed
            events.append(_model_event(name, "refused", current, f"{exc}{kept}", self.clock.now_ns()))
            if current is None:
                for asset, d in self._targets:
                    if d.model == name and d.detector is DetectorKind.ONNX:
                        self._idle(asset, d, None, f"model {name} refused: {exc}")
            await self.record(events)
            return
        for reason in loaded.refused:
            self.counters.refused_models += 1
            logger.error("model %s: %s; falling back to %s", name, reason, loaded.model.manifest.ref)
            events.append(_model_event(name, "refused", None, reason, self.clock.now_ns()))
        model = loaded.model
        if current is None or current.manifest != model.manifest:
            self.models[name] = model
            logger.info("model %s loaded from %s", model.manifest.ref, model.folder)
            events.append(_model_event(name, "loaded", model, "", self.clock.now_ns()))
            events += self._install(name, model)
        if events:
            await self.record(events)

    def _install(self, name: str, model: OnnxModel) -> list[Event]:
        """(Re)build the watches that use ``name``: a new model means new windows and a new threshold.
        A detector whose configured features differ from the model's stays idle: ``mismatch`` events."""
        m = model.manifest
        wanted = tuple(f.config() for f in m.input.features)
        idle: dict[str, tuple[DetectorConfig, list[str]]] = {}
        for asset, d in self._targets:
            if d.model != name or d.detector is not DetectorKind.ONNX:
                continue
            self._watches[asset] = [w for w in self._watches.get(asset, []) if w.config.id != d.id]
            if d.features and tuple(d.features) != wanted:
                idle.setdefault(d.id, (d, []))[1].append(asset)
                continue
            policy = m.threshold
            th = _threshold(d, policy.quantile, policy.margin, policy.warmup, policy.history, policy.reference)
            builder = WindowBuilder(asset, wanted, d.window or m.input.window)
            self._add(_Watch(asset, d, builder, th, model=model))
        events = []
        for detector, (d, assets) in idle.items():
            reason = (
                f"detector {detector} on {', '.join(assets)}: its features ({', '.join(f.name for f in d.features)}) "
                f"differ from {m.ref}'s ({', '.join(f.name for f in wanted)}); the detector is idle"
            )
            logger.error("model %s: %s", m.ref, reason)
            for asset in assets:
                self._idle(asset, d, m.ref, reason)
            extra: dict[str, object] = {"detector": detector, "assets": assets}
            events.append(_model_event(name, "mismatch", model, reason, self.clock.now_ns(), extra))
        return events

    def _add(self, watch: _Watch) -> None:
        self._watches.setdefault(watch.asset, []).append(watch)
        self._recall(watch)
        shown = self.twins.snapshot(watch.asset)["anomaly"].get(watch.config.id)  # type: ignore[attr-defined]
        if shown and shown.get("problem"):  # it was idle: it is not any more
            self.twins.set_anomaly(watch.asset, watch.config.id, self._blank_info(watch), notify=True)


def _score_groups(groups: list[list[_Job]]) -> list[tuple[list[Scored | None], str | None]]:
    """Runs on the worker thread: one onnxruntime call per model for all its queued windows. A model that
    fails on a batch is asked again one window at a time, so only the windows it fails on are lost (None),
    and a failing model never costs another model its windows. The first error comes with each group."""
    return [_score_group(jobs) for jobs in groups]


def _score_group(jobs: list[_Job]) -> tuple[list[Scored | None], str | None]:
    model = jobs[0].model
    rows = np.asarray([j.window.row for j in jobs], dtype=np.float32)
    try:
        return list(model.score(rows)), None
    except Exception as exc:  # onnxruntime's own runtime errors, or an output that does not fit the batch
        error = f"{type(exc).__name__}: {exc}"
    scored: list[Scored | None] = []
    for row in rows if len(rows) > 1 else ():
        try:
            scored += model.score(row[np.newaxis, :])
        except Exception:  # the error of the batch names it already
            scored.append(None)
    return scored or [None], error


def _targets(config: GatewayConfig) -> list[tuple[str, DetectorConfig]]:
    """(asset, detector) pairs: type-wide detectors, replaced per asset by an asset detector of the same id."""
    if not config.anomaly.enabled:
        return []
    pairs: dict[tuple[str, str], DetectorConfig] = {}
    for a in config.assets:
        for d in config.anomaly.detectors:
            if d.asset_type is not None and d.asset_type == a.type:
                pairs.setdefault((a.id, d.id), d)
    for d in config.anomaly.detectors:
        if d.asset is not None:
            pairs[d.asset, d.id] = d
    return [(asset, d) for (asset, _), d in pairs.items()]


def _threshold(
    d: DetectorConfig, quantile: float, margin: float, warmup: int, history: int, reference: float | None
) -> AdaptiveThreshold:
    t = d.threshold
    return AdaptiveThreshold(
        quantile=t.quantile or quantile,
        margin=t.margin or margin,
        warmup=t.warmup or warmup,
        history=t.history or history,
        manual=t.manual,
        reference=reference,
        raise_after=t.raise_after,
        clear_after=t.clear_after,
        clear_ratio=t.clear_ratio,
    )


def _baseline_watch(asset: str, d: DetectorConfig) -> _Watch:
    features: tuple[FeatureConfig, ...] = d.features
    warmup = d.threshold.warmup or BASELINE_WARMUP
    history = d.threshold.history or BASELINE_HISTORY
    th = _threshold(d, 0.995, 1.5, BASELINE_WARMUP, BASELINE_HISTORY, None)
    baseline = Baseline(len(features), warmup=warmup, history=history)
    return _Watch(asset, d, WindowBuilder(asset, features, d.window or DEFAULT_WINDOW), th, baseline=baseline)


def _model_event(
    name: str, state: str, model: OnnxModel | None, reason: str, ts: int, extra: dict[str, object] | None = None
) -> Event:
    return Event(
        kind="anomaly_model",
        source=f"model/{name}",
        ts=ts,
        attrs={"state": state, "model": model.manifest.ref if model else None, "reason": reason, **(extra or {})},
    )
