"""``avila-edge twin replay``: what-if replay of a journal range with a variant configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

import msgspec

from avila_edge.config import load_config
from avila_edge.core import SystemClock


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    twin = sub.add_parser("twin", help="digital twin tools")
    twin_sub = twin.add_subparsers(title="twin commands", metavar="COMMAND")
    replay = twin_sub.add_parser("replay", help="replay a journal range with a variant configuration (JSON report)")
    replay.add_argument("--config", type=Path, required=True, help="the gateway's configuration (its state_dir)")
    replay.add_argument("--variant", type=Path, required=True, help="the same site with changed limits/expressions")
    replay.add_argument("--from", dest="start", required=True, help="ISO-8601 start, e.g. 2026-11-25T08:00:00Z")
    replay.add_argument("--to", dest="end", required=True, help="ISO-8601 end (exclusive)")
    replay.add_argument("--state-dir", type=Path, help="override the configuration's state_dir")
    replay.set_defaults(handler=_replay)


def _ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise SystemExit(f"avila-edge: '{text}' needs a time zone (e.g. Z or +01:00)")
    return int(moment.timestamp() * 1e9)


def _replay(args: argparse.Namespace) -> int:
    from avila_edge.journal import Journal  # noqa: PLC0415
    from avila_edge.twins.replay import replay_journal  # noqa: PLC0415

    config = load_config(args.config)
    variant = load_config(args.variant)
    state_dir = args.state_dir or config.state_dir
    path = state_dir / "journal.sqlite3"
    if not path.exists():
        print(f"avila-edge: no journal at {path}", file=sys.stderr)
        return 1

    async def run() -> bytes:
        async with Journal.open(path, config.journal, clock=SystemClock()) as journal:
            report = await replay_journal(journal, config, variant, start_ns=_ns(args.start), end_ns=_ns(args.end))
        return msgspec.json.format(msgspec.json.encode(report), indent=2)

    sys.stdout.write(asyncio.run(run()).decode() + "\n")
    return 0
