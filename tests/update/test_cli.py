"""``avila-edge update``: a release key signs a bundle that a device verifies, applies and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avila_edge.cli import main

from .conftest import HARDWARE


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def test_keygen_sign_verify_apply_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "release.ed25519"
    code, out, _ = run(capsys, "update", "keygen", "--out", str(key))
    assert code == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    pub = Path(str(out["verifier_file"]))
    assert pub.read_text().startswith("avila-edge-release+")
    assert run(capsys, "update", "keygen", "--out", str(key))[0] == 1  # never overwritten

    image = tmp_path / "rootfs.img"
    image.write_bytes(os.urandom(50_000))
    bundle = tmp_path / "avila-edge-2.0.0.bundle"
    code, out, _ = run(capsys, "update", "sign", "--key-file", str(key), "--version", "2.0.0", "--hardware", HARDWARE,
                       "--image", str(image), "--out", str(bundle))  # fmt: skip
    assert code == 0
    assert out["size"] == 50_000

    hw = tmp_path / "hardware"
    hw.write_text(HARDWARE + "\n")
    device = ("--keys", str(pub), "--hardware-file", str(hw))
    code, out, _ = run(capsys, "update", "verify", str(bundle), *device)
    assert (code, out["version"]) == (0, "2.0.0")

    slots = tmp_path / "slots"
    code, out, _ = run(capsys, "update", "apply", str(bundle), "--slots", str(slots), *device)
    assert (code, out["slot"], out["version"]) == (0, "b", "2.0.0")
    code, out, _ = run(capsys, "update", "status", "--slots", str(slots))
    assert (out["primary"], out["trying"], out["next_boot"], out["tries_left"]) == ("a", "b", "b", 3)
    assert run(capsys, "update", "boot", "--slots", str(slots))[1]["booted"] == "b"
    assert run(capsys, "update", "rollback", "--slots", str(slots))[1] == {"next_boot": "a"}
    assert run(capsys, "update", "boot", "--slots", str(slots))[1]["booted"] == "a"


def test_apply_refuses_a_bundle_for_other_hardware_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "release.ed25519"
    run(capsys, "update", "keygen", "--out", str(key))
    image = tmp_path / "rootfs.img"
    image.write_bytes(b"x" * 1000)
    bundle = tmp_path / "pi.bundle"
    run(capsys, "update", "sign", "--key-file", str(key), "--hardware", "raspberrypi,4-model-b", "--image", str(image),
        "--out", str(bundle), "--version", "5.0.0")  # fmt: skip
    code, _, err = run(capsys, "update", "apply", str(bundle), "--slots", str(tmp_path / "s"),
                       "--keys", f"{key}.pub", "--hardware", HARDWARE)  # fmt: skip
    assert code == 1
    assert f"bundle is for hardware raspberrypi,4-model-b; this device is '{HARDWARE}'" in err


def test_a_bad_trusted_keys_file_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "update-keys"
    keys.write_text("# release keys\n\nnot-a-key\n")
    code, _, err = run(capsys, "update", "verify", "x.bundle", "--keys", str(keys), "--hardware", HARDWARE)
    assert code == 1
    assert f"{keys}:3: 'not-a-key' is not a verifier key" in err


def test_apply_reads_a_bundle_from_standard_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "release.ed25519"
    run(capsys, "update", "keygen", "--out", str(key))
    image = tmp_path / "rootfs.img"
    image.write_bytes(os.urandom(30_000))
    bundle = tmp_path / "b.bundle"
    run(capsys, "update", "sign", "--key-file", str(key), "--hardware", HARDWARE, "--image", str(image),
        "--out", str(bundle), "--version", "3.0.0")  # fmt: skip
    slots = tmp_path / "slots"
    with bundle.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "avila_edge.cli", "update", "apply", "-", "--slots", str(slots),
             "--keys", f"{key}.pub", "--hardware", HARDWARE],
            stdin=stdin, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["slot"] == "b"
    assert (slots / "b" / "image").read_bytes() == image.read_bytes()
