"""Secret files (passwords, tokens): named in the configuration, never written in it, never logged.

A relative name is looked up in systemd's credentials directory (``$CREDENTIALS_DIRECTORY``, filled by
``LoadCredential=``) first, then as given.
"""

from __future__ import annotations

import os
from pathlib import Path

from avila_edge.core import ConfigError, ConfigIssue


class SecretUnreadable(Exception):
    """The secret file cannot be read; ``detail`` says why in plain words."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


def read_secret_file(path: Path | str) -> str:
    """The text of the secret file ``path`` (callers decide what surrounding whitespace means)."""
    given = Path(path)
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    candidates = [Path(creds) / given, given] if creds and not given.is_absolute() else [given]
    error: OSError | UnicodeDecodeError | None = None
    for candidate in candidates:
        try:
            return candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            error = exc
    detail = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
    raise SecretUnreadable(given, detail)


def read_secret(path: Path | None, *, what: str) -> str | None:
    """The secret in ``path`` without surrounding whitespace (``None`` when no file is configured); an
    unreadable file is a configuration error naming it and what it should hold."""
    if path is None:
        return None
    try:
        return read_secret_file(path).strip()
    except SecretUnreadable:
        issue = ConfigIssue(str(path), None, "", f"the {what} file does not exist or cannot be read")
        raise ConfigError([issue]) from None
