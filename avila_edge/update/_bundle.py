"""Update bundles: an uncompressed POSIX tar of ``manifest.note`` then ``image``, read as a stream.

The signed manifest comes first, so a bundle is verified before a single byte of its image is
written anywhere, and a bundle can be applied from a pipe (``-`` reads standard input). The image
is hashed while it is copied; a size or SHA-256 that differs from the manifest refuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from avila_edge.audit import DeviceKey, Verifier
from avila_edge.update._manifest import (
    FORMAT,
    MAX_MANIFEST,
    Image,
    Manifest,
    UpdateError,
    open_manifest,
    sign_manifest,
)

MANIFEST_MEMBER = "manifest.note"
IMAGE_MEMBER = "image"
CHUNK = 1 << 20


def image_digest(path: Path) -> Image:
    """SHA-256 and size of the image file at ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Image(sha256=digest.hexdigest(), size=size)


def make_bundle(image: Path, out: Path, *, version: str, hardware: Sequence[str], key: DeviceKey) -> Manifest:
    """Write the bundle ``out`` carrying ``image``, signed by the release ``key``; return its manifest."""
    manifest = Manifest(format=FORMAT, version=version, hardware=tuple(hardware), image=image_digest(image))
    note = sign_manifest(manifest, key).encode()
    temp = out.with_name(f".{out.name}.new")
    with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST_MEMBER)
        info.size, info.mode = len(note), 0o644
        tar.addfile(info, io.BytesIO(note))
        info = tarfile.TarInfo(IMAGE_MEMBER)
        info.size, info.mode = manifest.image.size, 0o644
        with image.open("rb") as f:
            tar.addfile(info, f)
    temp.replace(out)
    return manifest


@dataclass(frozen=True, slots=True)
class OpenBundle:
    """A bundle whose manifest signature is verified; ``copy_image`` streams and checks its image."""

    where: str
    manifest: Manifest
    signer: Verifier
    _image: IO[bytes]

    def copy_image(self, write: Callable[[bytes], object]) -> None:
        """Pass the image to ``write`` in chunks; ``UpdateError`` if its size or SHA-256 is not the manifest's."""
        digest = hashlib.sha256()
        size = 0
        expected = self.manifest.image
        while True:
            with _reading(self.where):
                chunk = self._image.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > expected.size:
                break
            digest.update(chunk)
            write(chunk)
        if size != expected.size:
            raise UpdateError(f"{self.where}: image is {size} bytes, the manifest says {expected.size}")
        if digest.hexdigest() != expected.sha256:
            raise UpdateError(
                f"{self.where}: image SHA-256 {digest.hexdigest()} is not the manifest's {expected.sha256}"
            )


@contextlib.contextmanager
def open_bundle(path: Path | str, trusted: Sequence[Verifier]) -> Iterator[OpenBundle]:
    """Open the bundle at ``path`` (``-``: standard input) and verify its manifest's signature."""
    where = f"bundle {path}"
    try:
        source: IO[bytes] = sys.stdin.buffer if str(path) == "-" else open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UpdateError(f"{where}: cannot be read: {exc.strerror or exc}") from exc
    try:
        with _reading(where):
            tar = tarfile.open(fileobj=source, mode="r|")  # noqa: SIM115 - entered just below
        with tar:
            with _reading(where):
                note = _member(tar, MANIFEST_MEMBER, where, limit=MAX_MANIFEST).read()
            try:
                text = note.decode()
            except UnicodeDecodeError:
                raise UpdateError(f"{where}: {MANIFEST_MEMBER} is not UTF-8 text") from None
            manifest, signer = open_manifest(text, trusted, where=where)
            with _reading(where):
                image = _member(tar, IMAGE_MEMBER, where)
            yield OpenBundle(where, manifest, signer, image)
    finally:
        if source is not sys.stdin.buffer:
            source.close()


@contextlib.contextmanager
def _reading(where: str) -> Iterator[None]:
    """Translate errors of reading the bundle (not of writing its image) into ``UpdateError``."""
    try:
        yield
    except (tarfile.TarError, EOFError) as exc:
        raise UpdateError(f"{where}: not a readable bundle (tar): {exc}") from exc
    except OSError as exc:
        raise UpdateError(f"{where}: cannot be read: {exc.strerror or exc}") from exc


def _member(tar: tarfile.TarFile, name: str, where: str, *, limit: int | None = None) -> IO[bytes]:
    info = tar.next()
    if info is None:
        raise UpdateError(f"{where}: ends before its '{name}' member")
    if info.name != name or not info.isfile():
        raise UpdateError(f"{where}: expected the file '{name}' next, found '{info.name}'")
    if limit is not None and info.size > limit:
        raise UpdateError(f"{where}: '{name}' is {info.size} bytes (at most {limit})")
    f = tar.extractfile(info)
    if f is None:  # pragma: no cover - isfile() was checked
        raise UpdateError(f"{where}: '{name}' cannot be read")
    return f
