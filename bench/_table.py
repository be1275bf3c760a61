"""Rows, the registry of benchmark areas, and the printed table."""

from __future__ import annotations

import json
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
    head = f"{'area':<9} {'figure':<44} {'value':>14} {'unit':<12} {'baseline':>14}  {'ratio':>6}  baseline is"
    lines = [head, "-" * len(head)]
    for r in rows:
        base = f"{r.baseline:>14,.1f}" if r.baseline is not None else f"{'':>14}"
        ratio = f"{r.ratio:>6.2f}" if r.ratio is not None else f"{'':>6}"
        lines.append(f"{r.area:<9} {r.figure:<44} {r.value:>14,.1f} {r.unit:<12} {base}  {ratio}  {r.baseline_name}")
    return "\n".join(lines)


def save(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "machine": platform.machine(), "system": platform.platform()}
    data = {"machine": machine, "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}
    path.write_text(json.dumps(data, indent=2) + "\n")
