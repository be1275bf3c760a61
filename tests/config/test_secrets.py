"""Secret files: one reader for the runtime and the drivers, systemd credentials first."""

from __future__ import annotations

from pathlib import Path

import pytest

from avila_edge.config.secrets import SecretUnreadable, read_secret_file


def test_a_relative_name_prefers_the_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "broker.pass").write_text(" pw with spaces \n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.chdir(tmp_path)
    assert read_secret_file("broker.pass") == " pw with spaces \n"  # callers decide about whitespace


def test_an_unreadable_secret_says_why_and_names_the_configured_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(SecretUnreadable) as missing:
        read_secret_file("nope.pass")
    assert missing.value.path == Path("nope.pass")
    assert missing.value.detail == "No such file or directory"
    binary = tmp_path / "bin.pass"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(SecretUnreadable) as garbled:
        read_secret_file(binary)
    assert garbled.value.detail == "not UTF-8 text"
