"""``python -m hil scenarios``: fault scenarios against a real gateway process and the simulators."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hil.scenarios import ALL, HarnessConfigError, load_harness, run_scenarios

ROOT = Path(__file__).resolve().parents[2]

HARNESS = """\
recover: 5s
fault_seconds: 500ms
devices:
  - id: plc1
    address: simulator
    unit_id: 1
    timeout: 300ms
    points:
      - {id: pump1/flow, table: holding, address: 0, type: float32}
      - {id: pump1/pressure, table: holding, address: 8, type: int16}
scenarios: [link-drop, power-cut]
"""


def harness(tmp_path: Path, text: str = HARNESS) -> Path:
    path = tmp_path / "harness.yaml"
    path.write_text(text)
    return path


async def test_link_drop_and_power_cut_pass_against_the_simulated_plc(tmp_path: Path) -> None:
    results = await run_scenarios(load_harness(harness(tmp_path)))
    assert [(r.scenario, r.passed) for r in results] == [("link-drop", True), ("power-cut", True)], results
    assert "plc1 bad after" in results[0].detail
    assert "kill -9 at next seq" in results[1].detail


@pytest.mark.slow
def test_the_command_runs_the_scenarios_and_prints_pass_or_fail(tmp_path: Path) -> None:
    names = [name for name in ALL if name != "broker-restart"]  # that one: the test below
    text = HARNESS.replace("scenarios: [link-drop, power-cut]", "scenarios: [" + ", ".join(names) + "]")
    result = subprocess.run(
        [sys.executable, "-m", "hil", "scenarios", "--config", str(harness(tmp_path, text))],
        capture_output=True, text=True, cwd=ROOT, timeout=90, check=False,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1] for line in lines] == names, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("4 passed, 0 failed")
    corrupted = next(line for line in lines if line.split()[1] == "corrupted-frames")
    assert "errors counted {'plc1': " in corrupted  # and more than none, or the scenario fails


@pytest.mark.slow
async def test_after_a_broker_restart_the_uplink_delivers_what_was_journaled_meanwhile(tmp_path: Path) -> None:
    text = HARNESS.replace("scenarios: [link-drop, power-cut]", "broker: simulator\nscenarios: [broker-restart]")
    results = await run_scenarios(load_harness(harness(tmp_path, text)))
    assert [(r.scenario, r.passed) for r in results] == [("broker-restart", True)], results


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices: []\n", "devices: name at least one device"),
        ("devices:\n  - {id: plc1, address: 'plc.local', points: [{id: p/x, address: 0, type: int16}]}\n",
         "devices[0].address: 'plc.local' is neither 'simulator' nor HOST:PORT"),
        ("devices:\n  - {id: plc1, points: [{id: p/x, address: 0, type: int16}]}\nscenarios: [earthquake]\n",
         "scenarios: unknown scenario 'earthquake'"),
        ("devices:\n  - {id: plc1, timeout: soon, points: [{id: p/x, address: 0, type: int16}]}\n",
         "devices[0].timeout: 'soon' is not a duration"),
    ],
)  # fmt: skip
def test_a_bad_harness_file_is_named_with_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = harness(tmp_path, text)
    with pytest.raises(HarnessConfigError) as info:
        load_harness(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
