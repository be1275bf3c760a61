"""docs/updates.md: its boot-state example is what the code reads, and every command it shows exists."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from avila_edge.cli import build_parser
from avila_edge.update import BootState

DOC = Path(__file__).resolve().parents[2] / "docs" / "updates.md"


def test_the_boot_state_example_decodes() -> None:
    block = re.search(r"```json\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    state = msgspec.json.decode(block.group(1).encode(), type=BootState)
    assert (state.primary, state.trying, state.slots["b"].state) == ("a", "b", "installed")


def test_every_documented_command_exists(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = set(re.findall(r"avila-edge update ([a-z]+)", DOC.read_text()))
    assert commands >= {"keygen", "sign", "verify", "apply", "commit", "status", "rollback", "boot"}
    for command in commands:
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["update", command, "--help"])
        assert info.value.code == 0, command
        assert f"avila-edge update {command}" in capsys.readouterr().out
