"""Rows, the registry of benchmark areas, and the printed table."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    area: str
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline


Bench = Callable[[float], Awaitable[list[Row]]]
"""A benchmark area: given a time budget per measurement in seconds, returns its rows."""


def render(rows: list[Row]) -> str:
    wide = max([len("figure"), *(len(r.figure) for r in rows)])
    unit = max([len("unit"), *(len(r.unit) for r in rows)])
    head = f"{'area':<9} {'figure':<{wide}} {'value':>14} {'unit':<{unit}} {'baseline':>14}  {'ratio':>6}  baseline is"
    lines = [head, "-" * len(head)]
    for r in rows:
        base = f"{r.baseline:>14,.1f}" if r.baseline is not None else f"{'':>14}"
        ratio = f"{r.ratio:>6.2f}" if r.ratio is not None else f"{'':>6}"
        lines.append(
            f"{r.area:<9} {r.figure:<{wide}} {r.value:>14,.1f} {r.unit:<{unit}} {base}  {ratio}  {r.baseline_name}"
        )
    return "\n".join(lines)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def save(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "machine": platform.machine(), "system": platform.platform(),
               "cpu": _cpu(), "cores": os.cpu_count()}  # fmt: skip
    data = {"machine": machine, "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}
    path.write_text(json.dumps(data, indent=2) + "\n")
