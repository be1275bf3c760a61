"""The command line as a user meets it: help, several files checked at once, run stopped by Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "avila_edge.cli", *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_without_a_command_the_help_is_printed_and_the_exit_code_is_2() -> None:
    result = cli()
    assert result.returncode == 2
    assert "usage: avila-edge" in result.stdout
    for command in ("run", "demo", "config"):
        assert command in result.stdout


def test_config_check_reports_each_file_and_fails_if_any_has_problems(tmp_path: Path) -> None:
    good = ROOT / "hil" / "demo-site.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("site:\n  id: x\nhttp:\n  port: -1\n")
    missing = tmp_path / "missing.yaml"
    result = cli("config", "check", str(good), str(bad), str(missing))
    assert result.returncode == 1
    assert result.stdout == f"{good}: valid\n"
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"{bad}:4: http.port: ")
    assert errors[-1].startswith(f"{missing}: cannot read the file")


def test_run_stops_on_sigint_with_exit_0_and_keeps_its_journal_in_the_state_dir_given(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: {id: quiet}\nstate_dir: /nonexistent/never-used\nhttp: {host: 127.0.0.1, port: 0}\n"
        "logging: {format: json, level: info}\n"
    )
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "avila_edge.cli", "run", "--config", str(config), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        running = None
        while running is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            record = json.loads(line)
            if "status at" in record["event"]:
                running = record
        assert running is not None, "the gateway never said where its status is"
        assert running["level"] == "info"
        url = running["event"].rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        assert not url.startswith("http://127.0.0.1:0/")  # the bound port, not the configured 0
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, rest
    assert "gateway quiet stopped" in rest
    assert (state / "journal.sqlite3").exists()
