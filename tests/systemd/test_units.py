"""The shipped systemd units are valid and hardened: systemd's own verifier and exposure score."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "systemd").glob("*.service"))
PREFIX = "/opt/avila-edge/venv/bin/"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def test_every_unit_is_shipped() -> None:
    assert {u.name for u in UNITS} == {"avila-edge.service", "avila-edge-fleet.service", "avila-edge-mosquitto.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_score_is_at_most_2(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_verify_passes(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text()
    # the image installs the gateway's venv at /opt/avila-edge/venv; here the same console script
    # lives in this environment, which is the only thing this copy changes
    local = str(Path(sys.executable).parent) + "/"
    copy = tmp_path / unit.name
    copy.write_text(text.replace(PREFIX, local))
    assert copy.read_text().replace(local, PREFIX) == text
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 0
    assert problems == [], problems


def test_the_gateway_unit_is_a_notify_service_with_a_watchdog() -> None:
    text = (ROOT / "systemd" / "avila-edge.service").read_text()
    for line in ("Type=notify", "WatchdogSec=30", "DynamicUser=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                 "ProtectSystem=strict", "SystemCallFilter=@system-service", "MemoryMax="):  # fmt: skip
        assert line in text
