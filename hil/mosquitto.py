"""A real Mosquitto broker on a free loopback port, for tests, the demo and fault injection.

    with Mosquitto() as broker:                 # or: async with Mosquitto(...) as broker:
        ... broker.host, broker.port ...
        broker.restart()                        # same port, sessions lost (persistence false)

It writes a config file into its own temp dir (``listener <port> 127.0.0.1``, ``allow_anonymous``
as asked, ``max_queued_messages 0`` so a slow subscriber loses nothing, ``persistence false``), and
optionally a TLS listener with a CA, server and client certificates made with ``cryptography``, and
a password file made with ``mosquitto_passwd``. ``stop``/``start``/``restart`` keep the ports;
``pause``/``resume`` freeze the broker (SIGSTOP/SIGCONT) so clients see a silent link loss.

Imports nothing of the gateway: it stands in for a site's broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"  # noqa: S105 - a program, not a secret
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` different TCP ports nothing listens on right now (all held open while choosing, so the
    kernel cannot hand out the same one twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM files of a broker's TLS listener and of one client allowed to connect to it."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(folder: Path, *, client_name: str = "gateway") -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hil test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    server_cert, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))],
    )
    client_cert, client_key = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    files = TlsFiles(
        ca_file=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert)
    files.server_key.write_bytes(server_key)
    files.client_cert.write_bytes(client_cert)
    files.client_key.write_bytes(client_key)
    for key_file in (files.server_key, files.client_key):
        key_file.chmod(0o600)
    return files


class Mosquitto:
    """One Mosquitto process and its generated configuration.

    ``users`` maps user names to passwords (a password file is written with ``mosquitto_passwd``);
    ``tls`` adds a TLS listener on ``tls_port`` that requires a client certificate signed by the
    generated CA (``tls_files``). ``extra_config`` lines are appended to the config file.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        allow_anonymous: bool = True,
        users: Mapping[str, str] | None = None,
        tls: bool = False,
        require_certificate: bool = True,
        extra_config: Sequence[str] = (),
        binary: str = MOSQUITTO,
        workdir: Path | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        self.host = HOST
        plain, secure = free_ports(2)
        self.port = port or plain
        self.tls_port: int | None = (secure if secure != self.port else plain) if tls else None
        self.allow_anonymous = allow_anonymous
        self.users = dict(users or {})
        self.require_certificate = require_certificate
        self.extra_config = list(extra_config)
        self.binary = binary
        self.ready_timeout = ready_timeout
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="hil-mosquitto-"))
        self.config_file = self.workdir / "mosquitto.conf"
        self.log_file = self.workdir / "mosquitto.log"
        self.tls_files: TlsFiles | None = make_certificates(self.workdir / "tls") if tls else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    # -- configuration ---------------------------------------------------------------------------

    def _write_config(self) -> None:
        lines = [
            "per_listener_settings false",
            "set_tcp_nodelay true",  # as a broker beside gateways should be: see docs/fleet.md
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence false",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
            "log_type unsubscribe",
            "connection_messages true",
            "log_timestamp true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # keep access to the temp dir's files
        if self.users:
            password_file = self.workdir / "passwords"
            password_file.unlink(missing_ok=True)
            for name, password in self.users.items():
                args = [MOSQUITTO_PASSWD, "-b"]
                if not password_file.exists():
                    args.append("-c")
                subprocess.run([*args, str(password_file), name, password], check=True, capture_output=True)  # noqa: S603
            password_file.chmod(0o600)
            lines.append(f"password_file {password_file}")
        lines.append(f"listener {self.port} {self.host}")
        if self.tls_files is not None and self.tls_port is not None:
            t = self.tls_files
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {t.ca_file}",
                f"certfile {t.server_cert}",
                f"keyfile {t.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        lines += self.extra_config
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- process ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until every listener accepts connections."""
        if self.running:
            return
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        stderr_file = self.workdir / "stderr.log"
        with stderr_file.open("ab") as stderr:  # a file, not a pipe: nothing can block on it
            err_start = stderr.tell()
            self._proc = subprocess.Popen(  # noqa: S603 - fixed binary, generated config
                [self.binary, "-c", str(self.config_file)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + self.ready_timeout
        ports = [p for p in (self.port, self.tls_port) if p is not None]
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                err = stderr_file.read_bytes()[err_start:].decode(errors="replace")
                raise RuntimeError(f"mosquitto exited at start: {err.strip()} {self.log_tail()}")
            # ready once this process logged "running" (it opened every listener) and they answer
            if self._running_since(log_start) and all(self._accepts(p) for p in ports):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start on {self.host}:{ports} within {self.ready_timeout} s")
            time.sleep(0.02)
        logger.info("mosquitto %s listening on %s:%s (pid %s)", self.workdir.name, self.host, self.port, self.pid)

    def _running_since(self, offset: int) -> bool:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return b" running\n" in f.read()
        except FileNotFoundError:
            return False

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); clients see the link drop."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused broker cannot handle SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): sockets stay open but nothing answers, as on a dead link."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def close(self) -> None:
        """Stop the broker and remove its temp dir (when it made one)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- context managers ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        try:
            await asyncio.to_thread(self.start)
        except BaseException:
            await asyncio.to_thread(self.close)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hil.mosquitto [--port N] [--tls] [--user NAME:PASSWORD]``: run a broker until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m hil.mosquitto", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="plain listener port (default: a free one)")
    parser.add_argument("--tls", action="store_true", help="add a TLS listener requiring client certificates")
    parser.add_argument("--user", action="append", default=[], help="NAME:PASSWORD (disables anonymous login)")
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.user)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with Mosquitto(port=args.port, tls=args.tls, users=users, allow_anonymous=not users) as broker:
        print(f"mosquitto listening on {broker.host}:{broker.port}", flush=True)
        if broker.tls_files is not None:
            print(f"TLS on {broker.host}:{broker.tls_port}, files in {broker.tls_files.ca_file.parent}", flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)


if __name__ == "__main__":
    main()
