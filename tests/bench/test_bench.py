"""The benchmark command runs against the current code and writes every row with its baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    out = tmp_path / "latest.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--seconds", "0.2", "--json", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["machine"]["python"].startswith("3.")
    return result.stdout, data["rows"]


def test_every_area_prints_one_table_and_saves_rows_with_same_run_baselines(tmp_path: Path) -> None:
    table, rows = _bench(tmp_path)
    assert {r["area"] for r in rows} >= {"journal", "modbus", "pipeline"}
    assert table.splitlines()[0].split()[:3] == ["area", "figure", "value"]
    assert len(table.splitlines()) == len(rows) + 2
    for row in rows:
        assert isinstance(row["value"], float)
        assert row["value"] > 0, row
        assert row["figure"] in table
        if row["baseline"] is not None:
            assert row["baseline_name"], row
            assert row["ratio"] == row["value"] / row["baseline"]
    baselined = {r["area"] for r in rows if r["baseline"] is not None}
    assert {"journal", "modbus"} <= baselined


def test_only_runs_the_named_area(tmp_path: Path) -> None:
    _, rows = _bench(tmp_path, "--only", "journal")
    assert {r["area"] for r in rows} == {"journal"}
