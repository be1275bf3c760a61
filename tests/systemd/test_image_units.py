"""The units only the firmware image installs (first-boot provisioning, update commit) are valid and hardened."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "firmware-image" / "rootfs"
UNITS = sorted((IMAGE / "etc" / "systemd" / "system").glob("*.service"))
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def test_the_image_units_are_there() -> None:
    assert {u.name for u in UNITS} == {
        "avila-edge-provision.service",
        "avila-edge-update-boot.service",
        "avila-edge-update-commit.service",
        "avila-edge-http-forward.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_score_is_at_most_2(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_verify_passes(unit: Path, tmp_path: Path) -> None:
    # the programs live in the image; here the same ones come from this checkout and environment
    text = unit.read_text()
    text = text.replace("/opt/avila-edge/venv/bin/", str(Path(sys.executable).parent) + "/")
    text = text.replace("/usr/lib/avila-edge/provision", str(IMAGE / "usr" / "lib" / "avila-edge" / "provision"))
    for other in unit.parent.iterdir():  # a service's socket unit sits beside it
        (tmp_path / other.name).write_text(other.read_text())
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 0, problems
    assert problems == [], problems


def test_a_failed_commit_reboots_into_the_good_slot() -> None:
    text = (IMAGE / "etc" / "systemd" / "system" / "avila-edge-update-commit.service").read_text()
    assert "FailureAction=reboot" in text
    assert "avila-edge update commit --health-url http://127.0.0.1:8080/healthz" in text


def test_a_trial_boot_is_counted_before_the_gateway_and_the_commit_unit_start() -> None:
    # without this step "booted" never becomes the slot on trial: the commit unit could neither
    # commit nor roll back, and its FailureAction=reboot would loop
    text = (IMAGE / "etc" / "systemd" / "system" / "avila-edge-update-boot.service").read_text()
    assert "ExecStart=/opt/avila-edge/venv/bin/avila-edge update boot\n" in text
    assert "Before=avila-edge.service avila-edge-update-commit.service\n" in text
    enabled = (ROOT / "firmware-image" / "customize.sh").read_text()
    assert "avila-edge-update-boot.service avila-edge-update-commit.service" in enabled
