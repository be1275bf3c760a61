"""Release keys, slot images and bundles for the update tests."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from avila_edge.audit import DeviceKey
from avila_edge.update import DirectoryBackend, Slots, make_bundle

HARDWARE = "avila,gw-amd64-qemu"


@pytest.fixture(scope="session")
def release_key() -> DeviceKey:
    return DeviceKey.generate("avila-edge-release")


def image_file(folder: Path, name: str, size: int = 200_000) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def bundle(
    folder: Path, key: DeviceKey, *, version: str = "2.0.0", hardware: str = HARDWARE, size: int = 200_000
) -> Path:
    out = folder / f"avila-edge-{version}-{len(list(folder.iterdir()))}.bundle"
    make_bundle(image_file(folder, f"{out.name}.img", size), out, version=version, hardware=[hardware], key=key)
    return out


def members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        out = []
        for info in tar.getmembers():
            f = tar.extractfile(info)
            assert f is not None
            out.append((info.name, f.read()))
        return out


def write_tar(path: Path, items: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in items:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def slots(root: Path, installed: str = "1.0.0") -> Slots:
    return Slots(DirectoryBackend(root), installed=installed)
