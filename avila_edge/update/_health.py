"""The health check that decides a trial boot: the running gateway's ``/healthz`` within a deadline."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from avila_edge.update._manifest import UpdateError

DEFAULT_URL = "http://127.0.0.1:8080/healthz"


def wait_healthy(url: str, *, deadline: float, interval: float = 0.5) -> str | None:
    """Ask ``url`` until it answers 200 or ``deadline`` seconds pass; None when healthy, else the last problem.

    A gateway that is still starting refuses connections or answers 503; both are retried."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise UpdateError(f"health URL '{url}' is not http(s)")
    end = time.monotonic() + deadline
    problem = "no answer yet"
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return f"{url} not healthy within {deadline:g} s: {problem}"
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, min(2.0, left))) as answer:  # noqa: S310 - scheme checked
                if answer.status == 200:
                    return None
                problem = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            try:
                problem = f"HTTP {exc.code}: {exc.read(500).decode(errors='replace').strip()}"
            finally:
                exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            problem = f"unreachable: {reason}"
        time.sleep(max(0.0, min(interval, end - time.monotonic())))
