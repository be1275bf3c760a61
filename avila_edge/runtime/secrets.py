"""Secrets come from files (or systemd credentials), never from the configuration text or the logs."""

from __future__ import annotations

import os
from pathlib import Path

from avila_edge.core import ConfigError, ConfigIssue


def read_secret(path: Path | None, *, what: str) -> str | None:
    """The secret in ``path``; a relative path is looked up in ``$CREDENTIALS_DIRECTORY`` first."""
    if path is None:
        return None
    candidates = [path]
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and not path.is_absolute():
        candidates.insert(0, Path(creds) / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    raise ConfigError([ConfigIssue(str(path), None, "", f"the {what} file does not exist or cannot be read")])
