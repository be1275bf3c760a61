"""``avila-edge audit ...``: JSON on stdout, exit 1 with the reason on stderr, and proofs that the
standalone script of docs/audit.md (hashlib + cryptography only) accepts, and rejects once altered.

The state (see conftest): readings 0..49, audit_key 50, checkpoints of 51, 102, 153 and 204 leaves
journaled at those seqs, next seq 205."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avila_edge.audit import KEY_FILE, AuditLog, DeviceKey, Verifier, open_checkpoint, verify_consistency
from avila_edge.cli import main
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.core import ManualClock
from avila_edge.journal import Journal

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
ORIGIN = "avila-edge/test-site"


@pytest.fixture
def state(make_state: Callable[..., Path]) -> Path:
    return make_state()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["audit", *argv])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


@pytest.fixture
def docs_script(tmp_path: Path) -> Path:
    match = re.search(r"<!-- verify_reading.py -->\n```python\n(.*?)```", DOCS.read_text(), re.S)
    assert match, "docs/audit.md lost its verify_reading.py block"
    script = tmp_path / "verify_reading.py"
    script.write_text(match.group(1))
    return script


def third_party(
    script: Path, bundle: dict[str, Any], vkey: str, entry: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the docs' script in a fresh interpreter that has no access to our package."""
    folder = script.parent
    (folder / "proof.json").write_text(json.dumps(bundle))
    argv = [sys.executable, "-I", str(script), str(folder / "proof.json"), vkey]
    if entry is not None:
        (folder / "entry.bin").write_bytes(entry)
        argv.append(str(folder / "entry.bin"))
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=folder)


def test_pubkey_prints_the_verifier_key_the_gateway_signs_with(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "pubkey", "--state-dir", str(state))
    assert code == 0
    assert out["verifier_key"] == DeviceKey.load(state / KEY_FILE, name=ORIGIN).verifier.text()
    assert out["origin"] == ORIGIN
    assert out["previous_keys"] == []


def test_a_proof_convinces_the_standalone_script_of_the_docs(
    state: Path, docs_script: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, vkey, _ = run(capsys, "pubkey", "--state-dir", str(state))
    code, bundle, _ = run(capsys, "prove", "--state-dir", str(state), "--seq", "30")
    assert code == 0
    assert (bundle["leaf_index"], bundle["tree_size"], bundle["checkpoint_seq"]) == (30, 204, 204)
    assert json.loads(bytes.fromhex(bundle["entry_hex"]))["value"] == 30.0
    assert base64.b64decode(bundle["root_hash"]["base64"]).hex() == bundle["root_hash"]["hex"]
    result = third_party(docs_script, bundle, vkey["verifier_key"])
    assert result.returncode == 0, result.stderr
    assert "PROVEN: entry 30 is in the tree of 204 entries" in result.stdout


def test_the_docs_script_rejects_an_altered_entry_index_size_proof_or_checkpoint(
    state: Path, docs_script: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, vkey, _ = run(capsys, "pubkey", "--state-dir", str(state))
    _, bundle, _ = run(capsys, "prove", "--state-dir", str(state), "--seq", "30")
    entry = bytes.fromhex(bundle["entry_hex"])
    flipped = bytes.fromhex(bundle["inclusion_proof"][2])
    forgeries: dict[str, dict[str, Any]] = {
        "entry": {"entry_hex": entry.replace(b'"value":30.0', b'"value":31.0').hex()},
        "index": {"leaf_index": 31},
        "size": {"tree_size": 205},
        "proof": {
            "inclusion_proof": [
                *bundle["inclusion_proof"][:2],
                bytes([flipped[0] ^ 1, *flipped[1:]]).hex(),
                *bundle["inclusion_proof"][3:],
            ]
        },
        "checkpoint": {"checkpoint": bundle["checkpoint"].replace("\n204\n", "\n203\n")},
    }
    for what, change in forgeries.items():
        result = third_party(docs_script, {**bundle, **change}, vkey["verifier_key"])
        assert result.returncode != 0, f"altered {what} was accepted"
        assert "PROVEN" not in result.stdout
    other_key = DeviceKey.generate(ORIGIN).verifier.text()
    assert third_party(docs_script, bundle, other_key).returncode != 0


def test_prove_uses_the_newest_covering_checkpoint_or_the_one_asked_for(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, bundle, _ = run(capsys, "prove", "--state-dir", str(state), "--seq", "60", "--size", "102")
    assert code == 0 and bundle["tree_size"] == 102
    code, _, err = run(capsys, "prove", "--state-dir", str(state), "--seq", "60", "--size", "51")
    assert code == 1 and "does not cover entry 60" in err
    code, _, err = run(capsys, "prove", "--state-dir", str(state), "--seq", "60", "--size", "77")
    assert code == 1 and "no checkpoint of 77 leaves; nearest: [51, 102, 153]" in err


def test_prove_says_so_when_no_checkpoint_covers_the_entry_yet(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "prove", "--state-dir", str(state), "--seq", "204")
    assert code == 1 and out is None
    assert "no checkpoint covers entry 204 yet" in err
    code, _, err = run(capsys, "prove", "--state-dir", str(state), "--seq", "999")
    assert code == 1 and "entry 999 is not in the audit tree" in err


def test_consistency_prints_both_checkpoints_and_a_proof_between_them(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "consistency", "--state-dir", str(state), "--from", "51", "--to", "204")
    assert code == 0
    _, vkey, _ = run(capsys, "pubkey", "--state-dir", str(state))
    verifier = Verifier.parse(vkey["verifier_key"])
    old = open_checkpoint(out["from"]["note"], [verifier])
    new = open_checkpoint(out["to"]["note"], [verifier])
    proof = [bytes.fromhex(h) for h in out["consistency_proof"]]
    assert (old.size, new.size) == (51, 204)
    assert verify_consistency(51, 204, old.root, new.root, proof)
    code, _, err = run(capsys, "consistency", "--state-dir", str(state), "--from", "204", "--to", "51")
    assert code == 1 and "--from must be at least 1 and at most --to" in err


def test_commands_find_the_state_through_the_gateways_configuration(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"site:\n  id: test-site\nstate_dir: {state}\n")
    code, out, _ = run(capsys, "verify", "--config", str(config))
    assert code == 0 and out["ok"] is True
    code, out, _ = run(capsys, "prove", "--config", str(config), "--seq", "3")
    assert code == 0 and out["leaf_index"] == 3


def test_a_missing_state_directory_is_a_plain_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "verify", "--state-dir", str(tmp_path / "nowhere"))
    assert code == 1 and out is None
    assert f"no journal at {tmp_path / 'nowhere' / 'journal.sqlite3'}" in err


async def test_pubkey_before_the_first_checkpoint_comes_from_the_key_file_and_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = ManualClock()
    state = tmp_path / "state"
    async with Journal.open(state / "journal.sqlite3", JournalConfig(), clock=clock) as journal:
        log = await AuditLog.attach(journal, state_dir=state, config=AuditConfig(), origin=ORIGIN, clock=clock)
    config = tmp_path / "site.yaml"
    config.write_text(f"site:\n  id: test-site\nstate_dir: {state}\n")
    code, out, _ = run(capsys, "pubkey", "--config", str(config))
    assert code == 0 and out["verifier_key"] == log.verifier.text()
    code, _, err = run(capsys, "pubkey", "--state-dir", str(state))
    assert code == 1 and "no verifier key recorded yet" in err


def test_the_commands_run_as_a_program(state: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "avila_edge.cli", "audit", "verify", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
