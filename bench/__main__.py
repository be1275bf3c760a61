"""``python -m bench``: print one table of figures with their same-run baselines, and save it as JSON."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bench import anomaly, audit, journal, latency, memory, modbus, mqtt, opcua, peers, pipeline, sync
from bench._table import Bench, Row, render, save

AREAS: dict[str, Bench] = {
    "journal": journal.run,
    "modbus": modbus.run,
    "pipeline": pipeline.run,
    "audit": audit.run,
    "anomaly": anomaly.run,
    "sync": sync.run,
    "opcua": opcua.run,
    "mqtt": mqtt.run,
    "latency": latency.run,
    "memory": memory.run,
    "peers": peers.run,
}
OPT_IN = {"peers"}  # slow (installs and runs a peer gateway): only with --only peers
QUIET = ("avila_edge.anomaly", "avila_edge.web.auth")
"""Loggers whose warnings the benches cause on purpose: the anomalies the anomaly bench provokes, and
the console's setup-token notice of every gateway a bench starts (a fresh state folder each time)."""


async def _main(names: list[str], seconds: float) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += await AREAS[name](seconds)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", action="append", choices=sorted(AREAS), help="run only these areas")
    parser.add_argument("--quick", action="store_true", help="0.5 s per measurement instead of 3 s")
    parser.add_argument("--seconds", type=float, help="time per measurement in seconds (overrides --quick)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "latest.json")
    args = parser.parse_args()
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    seconds = args.seconds if args.seconds is not None else 0.5 if args.quick else 3.0
    rows = asyncio.run(_main(args.only or [a for a in AREAS if a not in OPT_IN], seconds))
    print(render(rows))
    save(rows, args.json)
    print(f"\nsaved {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
