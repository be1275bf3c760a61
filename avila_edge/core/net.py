"""Whether a host name or address stays on this machine (plain text is acceptable there, nowhere else)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether a listener bound to, or a peer at, ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
