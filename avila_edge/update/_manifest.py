"""The update manifest: what a bundle holds, for which hardware, signed by a release key.

The manifest is one line of JSON, the body of a C2SP signed note (``avila_edge.audit.sign_note``)::

    {"format":1,"version":"1.4.0","hardware":["avila,gw-amd64-qemu"],"image":{"sha256":"…","size":123}}

    — avila-edge-release Ab3x…

``UpdateError`` is the one error of the update package; its message says which bundle, slot or check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from avila_edge.audit import DeviceKey, Verifier, open_note, sign_note
from avila_edge.core import AuditError, GatewayError

FORMAT = 1
"""The manifest format this gateway writes and reads."""

MAX_MANIFEST = 64 * 1024
"""A manifest larger than this is refused before it is parsed."""

_VERSION = re.compile(r"^(\d+(?:\.\d+){0,3})([-+._a-zA-Z0-9]*)$")
_HARDWARE = re.compile(r"^[a-z0-9][-a-z0-9_.,]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UpdateError(GatewayError):
    """An update cannot be verified, written, booted, committed or rolled back."""


def version_key(version: str) -> tuple[int, ...]:
    """The ordering key of ``version`` (its dotted release numbers); ``UpdateError`` if it has none."""
    match = _VERSION.match(version)
    if match is None:
        raise UpdateError(f"version '{version}' is not dotted release numbers (e.g. 1.4.0, 1.4.0+build7)")
    return tuple(int(part) for part in match.group(1).split("."))


class Image(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The slot image the bundle carries: its SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not _SHA256.match(self.sha256):
            raise UpdateError(f"image sha256 '{self.sha256}' is not 64 lowercase hex digits")
        if self.size < 0:
            raise UpdateError(f"image size {self.size} is negative")


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a bundle installs (``version``), where (``hardware`` compatible strings) and its ``image``."""

    format: int
    version: str
    hardware: tuple[str, ...]
    image: Image

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise UpdateError(f"manifest format {self.format} is not supported (this gateway reads {FORMAT})")
        version_key(self.version)
        if not self.hardware:
            raise UpdateError("manifest names no hardware it is for")
        for hw in self.hardware:
            if not _HARDWARE.match(hw):
                raise UpdateError(f"hardware '{hw}' is not a compatible string (lowercase, e.g. 'avila,gw-arm64')")

    def body(self) -> str:
        return msgspec.json.encode(self).decode() + "\n"


def sign_manifest(manifest: Manifest, key: DeviceKey) -> str:
    """``manifest`` as a signed note by the release ``key``."""
    return sign_note(manifest.body(), key)


def open_manifest(note: str, trusted: Sequence[Verifier], *, where: str) -> tuple[Manifest, Verifier]:
    """The manifest in ``note`` once a ``trusted`` key's signature on it is verified."""
    if not trusted:
        raise UpdateError(f"{where}: no trusted release key is configured, so no bundle can be verified")
    try:
        body, signer = open_note(note, trusted)
    except AuditError as exc:
        raise UpdateError(f"{where}: signature refused: {exc}") from exc
    try:
        manifest = msgspec.json.decode(body.encode(), type=Manifest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UpdateError(f"{where}: manifest is invalid: {exc}") from exc
    return manifest, signer


def check_fits(manifest: Manifest, *, hardware: str, installed: str | None, force: bool, where: str) -> None:
    """Refuse ``manifest`` on other ``hardware``, or older than the ``installed`` version unless ``force``."""
    if hardware not in manifest.hardware:
        raise UpdateError(
            f"{where}: bundle is for hardware {', '.join(manifest.hardware)}; this device is '{hardware}'"
        )
    if installed is not None and not force:
        try:
            older = version_key(manifest.version) < version_key(installed)
        except UpdateError:
            older = False  # an unparsable installed version (a bare checkout) cannot be downgraded from
        if older:
            raise UpdateError(
                f"{where}: version {manifest.version} is older than the installed {installed} "
                "(a downgrade needs --force)"
            )


def read_trusted(text: str, *, where: str) -> list[Verifier]:
    """Verifier keys, one per line (``#`` comments and blank lines skipped); errors name ``where:LINE``."""
    keys: list[Verifier] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keys.append(Verifier.parse(line))
        except AuditError as exc:
            raise UpdateError(f"{where}:{number}: {exc}") from exc
    return keys
