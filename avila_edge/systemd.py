"""systemd integration: service notifications (sd_notify: READY, STATUS, WATCHDOG, STOPPING; no-ops
outside systemd) and the generator that opens exactly the site's serial ports to the gateway unit.

The gateway unit runs with ``PrivateDevices=yes``: no device node is reachable. At every boot and
``systemctl daemon-reload`` the generator ``systemd/avila-edge-devices-generator`` reads the site
configuration and, when enabled devices name serial ports (a connection ``port`` that is a path, as
Modbus RTU and the serial driver use), writes a drop-in for ``avila-edge.service`` that allows those
ports and nothing else (``DevicePolicy=closed``, one ``DeviceAllow=`` a port).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avila_edge.config.model import GatewayConfig

logger = logging.getLogger(__name__)

SITE_CONFIG = Path("/etc/avila-edge/site.yaml")
DEVICE_DROPIN = Path("avila-edge.service.d") / "50-serial-ports.conf"
"""Where the generator writes, relative to its output folder."""
_PATH_PART = re.compile(r"[A-Za-z0-9._:+@=-]+")


def _is_device_path(path: str) -> bool:
    """Whether ``path`` names something under ``/dev`` in characters a unit file holds as they are."""
    top, dev, *parts = path.split("/")
    return (
        (top, dev) == ("", "dev")
        and bool(parts)
        and all(_PATH_PART.fullmatch(part) and part not in (".", "..") for part in parts)
    )


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> None:
        if not self.address:
            return
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as s:
                s.connect(self.address)
                s.sendall(message)  # never blocks the event loop: a full queue drops this message
        except OSError as exc:
            logger.warning("sd_notify to %r failed: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")


def serial_ports(config: GatewayConfig) -> dict[str, str]:
    """The serial ports the enabled devices of ``config`` open, each with the first device naming it."""
    ports: dict[str, str] = {}
    for device in config.devices:
        port = getattr(device.connection, "port", None)
        if device.enabled and isinstance(port, str) and port.startswith("/"):
            ports.setdefault(port, device.id)
    return dict(sorted(ports.items()))


def device_dropin(ports: dict[str, str]) -> tuple[str | None, list[str]]:
    """The drop-in text that allows ``ports`` (None when there is none to allow), and the problems:
    a port outside ``/dev`` (or with characters a unit file cannot hold) is left out and named."""
    problems = []
    allowed = []
    for port, device in ports.items():
        if _is_device_path(port):
            allowed.append(port)
        else:
            problems.append(f"device '{device}': serial port '{port}' is not a path under /dev/; it stays unreachable")
    if not allowed:
        return None, problems
    lines = [
        "# written at boot by avila-edge-devices-generator from the site configuration: the gateway",
        "# reaches these serial ports and no other device node",
        "[Service]",
        "PrivateDevices=no",
        "DevicePolicy=closed",
        *(f"DeviceAllow={port} rw" for port in allowed),
        "SupplementaryGroups=dialout",
    ]
    return "\n".join(lines) + "\n", problems


def run_generator(argv: Sequence[str], *, site: Path = SITE_CONFIG) -> int:
    """systemd generator entry (``argv``: the normal, early and late output folders).

    Never fails the boot: a site that cannot be read or is invalid opens no port (the unit's
    ``ExecStartPre`` config check then prints its problems); problems go to stderr (the kernel log)."""
    from avila_edge.config import load_config  # noqa: PLC0415 - only the generator parses the site
    from avila_edge.core import ConfigError  # noqa: PLC0415

    if not argv:
        print("avila-edge-devices-generator: expects the generator output folders", file=sys.stderr)
        return 2
    if not site.exists():
        return 0
    try:
        config = load_config(site)
    except ConfigError as exc:
        first = exc.issues[0] if exc.issues else site
        print(f"avila-edge-devices-generator: {first}; no serial port is opened", file=sys.stderr)
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        print(f"avila-edge-devices-generator: {site}: cannot be read ({exc}); no port is opened", file=sys.stderr)
        return 0
    text, problems = device_dropin(serial_ports(config))
    for problem in problems:
        print(f"avila-edge-devices-generator: {site}: {problem}", file=sys.stderr)
    if text is not None:
        out = Path(argv[0]) / DEVICE_DROPIN
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return 0
