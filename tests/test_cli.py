"""The command line: version, config check output and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import avila_edge

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "avila_edge.cli", *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_version_prints_the_package_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"avila-edge {avila_edge.__version__}"


def test_config_check_accepts_every_shipped_configuration() -> None:
    files = [str(p) for p in sorted((ROOT / "configs").glob("*.yaml"))] + [str(ROOT / "hil" / "demo-site.yaml")]
    result = cli("config", "check", *files)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_config_check_prints_file_line_problems_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site:\n  id: x\njournal:\n  max_bytes: lots\n")
    result = cli("config", "check", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{bad}:4: journal.max_bytes: ")
    assert result.stdout == ""


def test_run_with_an_invalid_config_exits_1_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: x}\nhttp: {port: 99999}\n")
    result = cli("run", "--config", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2: http.port" in result.stderr


def test_a_site_without_anomaly_detection_never_loads_numpy_or_onnxruntime() -> None:
    """What a gateway that reads and forwards carries in memory: the CLI (with every command group
    registered), the gateway, the Modbus driver and the uplink, but no numpy (about 15 MiB resident)
    and no onnxruntime until a site configures anomaly detection."""
    code = (
        "import sys, avila_edge.cli, avila_edge.runtime.gateway, drivers.modbus.driver, avila_edge.sync.mqtt_uplink\n"
        "avila_edge.cli._command_groups()\n"
        "print(sorted(m for m in ('numpy', 'onnxruntime', 'asyncua') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
