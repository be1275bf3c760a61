"""The benchmark command runs against the current code and writes every row with its baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    out = tmp_path / "latest.json"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bench", "--seconds", "0.2", "--json", str(out), *args],
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=100, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:  # inside pytest's own limit, so the area that hung is named
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        raise AssertionError(f"the bench did not finish in 100 s; its last words: {err[-2000:]}") from None
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["machine"]["python"].startswith("3.")
    return result.stdout, data["rows"]


def test_every_area_prints_one_table_and_saves_rows_with_same_run_baselines(tmp_path: Path) -> None:
    table, rows = _bench(tmp_path)
    areas = {r["area"] for r in rows}
    assert areas >= {"journal", "modbus", "pipeline", "audit", "sync", "opcua", "mqtt", "latency", "memory"}
    assert "peers" not in areas  # opt-in: it installs and runs a peer gateway
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
    assert {"journal", "modbus", "opcua", "mqtt", "memory"} <= baselined
    pipeline = {r["figure"] for r in rows if r["area"] == "pipeline"}
    assert {"ingest, all stages, wall clock", "ingest, all stages, per CPU-second (1 core)"} <= pipeline
    stages = {f.partition(" (")[0] for f in pipeline if f.startswith("stage: ")}
    assert stages == {"stage: readings made", "stage: journal append", "stage: deadband filter + twins",
                      "stage: audit", "stage: anomaly", "stage: uplink cursor"}  # fmt: skip


def test_only_runs_the_named_area(tmp_path: Path) -> None:
    _, rows = _bench(tmp_path, "--only", "journal")
    assert {r["area"] for r in rows} == {"journal"}


def test_a_peer_gateway_that_cannot_be_installed_skips_with_its_reason_and_the_table_still_prints(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the peer's cache folder would go\n")
    env = {**os.environ, "AVILA_BENCH_CACHE": str(blocked / "cache")}
    table, rows = _bench(tmp_path, "--only", "peers", env=env)
    assert len(rows) == 1
    assert rows[0]["area"] == "peers"
    assert rows[0]["figure"].startswith("skipped: ")
    assert "Not a directory" in rows[0]["figure"]
    assert rows[0]["figure"] in table
