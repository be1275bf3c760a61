"""Secrets are read from files, relative names from systemd's credentials directory first."""

from __future__ import annotations

from pathlib import Path

import pytest

from avila_edge.config.secrets import read_secret
from avila_edge.core import ConfigError


def test_a_relative_name_is_looked_up_in_the_credentials_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds, cwd = tmp_path / "creds", tmp_path / "cwd"
    creds.mkdir()
    cwd.mkdir()
    (creds / "uplink.pass").write_text("from-systemd\n")
    (cwd / "uplink.pass").write_text("from-working-dir\n")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_secret(Path("uplink.pass"), what="uplink cloud password") == "from-systemd"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert read_secret(Path("uplink.pass"), what="uplink cloud password") == "from-working-dir"


def test_an_absolute_path_is_read_as_given_without_surrounding_whitespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "token"
    secret.write_text("  s3cr3t-token\n\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "elsewhere"))
    assert read_secret(secret, what="token") == "s3cr3t-token"


def test_no_file_configured_means_no_secret() -> None:
    assert read_secret(None, what="token") is None


def test_a_missing_secret_file_is_a_config_error_naming_the_file_and_what_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    missing = tmp_path / "nope.pass"
    with pytest.raises(ConfigError) as raised:
        read_secret(missing, what="uplink cloud password")
    (issue,) = raised.value.issues
    assert str(missing) in str(issue)
    assert "the uplink cloud password file does not exist or cannot be read" in str(issue)
