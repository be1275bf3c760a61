"""``avila-edge model list|activate|rollback|verify|train``: the model registry from the command line.

The registry is the configuration's (``anomaly.registry``, default ``<state_dir>/models``) or the one
named with ``--registry``. A running gateway notices an activation or rollback within
``anomaly.reload_interval`` and keeps its current model when the new one is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from avila_edge.core import GatewayError, Reading, SystemClock

if TYPE_CHECKING:
    from avila_edge.anomaly.registry import ModelRegistry

KINDS = ("autoencoder", "isolation-forest")
"""What ``model train --kind`` fits (``train.py``: ``fit_autoencoder``, ``fit_isolation_forest``)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    model = sub.add_parser("model", help="anomaly model registry: versions, activation, rollback, training")
    cmds = model.add_subparsers(title="model commands", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=text)
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--config", type=Path, help="site configuration (its anomaly.registry / state_dir)")
        where.add_argument("--registry", type=Path, help="the registry folder itself")
        return p

    p = command("list", "models, their versions and which is active")
    p.set_defaults(handler=_list)
    p = command("activate", "verify a version and make it active")
    p.add_argument("name")
    p.add_argument("version")
    p.set_defaults(handler=_activate)
    p = command("rollback", "make the previously active version active again")
    p.add_argument("name")
    p.set_defaults(handler=_rollback)
    p = command("verify", "check hash, inputs and outputs of a version against its manifest (default: the active one)")
    p.add_argument("name")
    p.add_argument("version", nargs="?")
    p.set_defaults(handler=_verify)
    p = cmds.add_parser("train", help="fit a model on local history and add it to the registry (needs [train])")
    p.add_argument("--config", type=Path, required=True, help="site configuration (journal and registry)")
    p.add_argument("--asset", required=True, help="the asset whose history is normal operation")
    p.add_argument("--name", required=True, help="model name; its features come from the asset's onnx detector")
    p.add_argument("--version", required=True)
    p.add_argument("--from", dest="start", required=True, help="ISO-8601 start of normal history")
    p.add_argument("--to", dest="end", required=True, help="ISO-8601 end (exclusive)")
    p.add_argument("--activate", action="store_true", help="make the new version active at once")
    p.add_argument("--kind", choices=KINDS, default=KINDS[0], help="what to fit (default: autoencoder)")
    p.set_defaults(handler=_train)


def _registry(args: argparse.Namespace) -> ModelRegistry:
    from avila_edge.anomaly.registry import ModelRegistry  # noqa: PLC0415
    from avila_edge.anomaly.service import registry_of  # noqa: PLC0415

    if getattr(args, "registry", None) is not None:
        return ModelRegistry(args.registry)
    from avila_edge.config import load_config  # noqa: PLC0415

    return registry_of(load_config(args.config))


def _list(args: argparse.Namespace) -> int:
    from avila_edge.anomaly.manifest import ModelRefused, read_manifest  # noqa: PLC0415

    registry = _registry(args)
    names = registry.names()
    if not names:
        print(f"no models in {registry.root} or the shipped models")
    for name in names:
        active = registry.active(name)
        pointer = registry.pointer(name)
        print(f"{name}  (rollback to: {', '.join(reversed(pointer.history)) if pointer and pointer.history else '-'})")
        for v in registry.versions(name):
            mark = "*" if v.version == active else " "
            try:
                m = read_manifest(v.folder)
                what = f"{len(m.input.features)} features, {m.input.window:g} s window, sha256 {m.sha256[:12]}"
            except ModelRefused as exc:
                what = f"unreadable manifest: {exc}"
            where = "shipped" if v.shipped else "registry"
            print(f" {mark} {v.version:<8} {where:<8} {what}")
    return 0


def _activate(args: argparse.Namespace) -> int:
    registry = _registry(args)
    before = registry.active(args.name)
    model = registry.activate(args.name, args.version)
    print(f"{model.manifest.ref} is active (was {before or 'none'})")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    registry = _registry(args)
    before = registry.active(args.name)
    model = registry.rollback(args.name)
    print(f"{model.manifest.ref} is active again (was {before})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    registry = _registry(args)
    version = args.version or registry.active(args.name)
    if version is None:
        raise GatewayError(f"no model named '{args.name}' in {registry.root}")
    m = registry.load(args.name, version).manifest
    features = ", ".join(f.name for f in m.input.features)
    print(f"{m.ref}: ok (sha256 {m.sha256[:16]}…, input '{m.input.name}' [batch, {len(m.input.features)}]: {features})")
    return 0


def _ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise GatewayError(f"'{text}' needs a time zone (e.g. Z or +01:00)")
    return int(moment.timestamp() * 1e9)


def _train(args: argparse.Namespace) -> int:
    from avila_edge.anomaly.manifest import read_manifest  # noqa: PLC0415
    from avila_edge.anomaly.service import DEFAULT_WINDOW, registry_of  # noqa: PLC0415
    from avila_edge.anomaly.train import fit_autoencoder, fit_isolation_forest, rows_from_readings  # noqa: PLC0415
    from avila_edge.config import load_config  # noqa: PLC0415
    from avila_edge.journal import Journal  # noqa: PLC0415

    config = load_config(args.config)
    registry = registry_of(config)
    detector = next(
        (
            d
            for d in config.anomaly.detectors
            if d.model == args.name and (d.asset == args.asset or (d.asset_type and d.features))
        ),
        None,
    )
    features, window = (detector.features, detector.window) if detector else ((), None)
    if not features:
        active = registry.active(args.name)
        if active is None:
            raise GatewayError(f"no features for {args.name}: give its detector 'features:' or ship a first version")
        m = read_manifest(registry.find(args.name, active).folder)
        features, window = tuple(f.config() for f in m.input.features), window or m.input.window
    window = window or DEFAULT_WINDOW
    path = config.state_dir / "journal.sqlite3"
    if not path.exists():
        raise GatewayError(f"no journal at {path}")
    start, end = _ns(args.start), _ns(args.end)

    async def history() -> list[Reading]:
        async with Journal.open(path, config.journal, clock=SystemClock()) as journal:
            out: list[Reading] = []
            for point in sorted({f.point for f in features}):
                out += await journal.history(f"{args.asset}/{point}", start, end, limit=10_000_000)
        return out

    readings = sorted(asyncio.run(history()), key=lambda r: r.ts_gateway)
    rows = rows_from_readings(readings, args.asset, features, window)
    out = registry.root / args.name / f".{args.version}.train"
    fit = fit_autoencoder if args.kind == "autoencoder" else fit_isolation_forest
    manifest = fit(rows, features, name=args.name, version=args.version, window=window, out=out)
    installed = registry.install(out)
    shutil.rmtree(out, ignore_errors=True)
    print(
        f"{manifest.ref}: trained on {len(rows)} windows of {args.asset}, saved in {installed.folder}", file=sys.stderr
    )
    if args.activate:
        registry.activate(args.name, args.version)
        print(f"{manifest.ref} is active")
    return 0
