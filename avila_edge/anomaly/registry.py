"""The model registry on the gateway: versions, activation and rollback.

Layout (``anomaly.registry``, default ``<state_dir>/models``)::

    models/
      pump-ae/
        1/  model.onnx  manifest.json
        2/  model.onnx  manifest.json
        active.json     {"version": "2", "history": ["1"]}

Models shipped with the gateway (``avila_edge/anomaly/models/<name>/<version>/``) are versions too;
a version in the registry folder wins over a shipped one of the same number. With no ``active.json``
the newest version is active. ``activate`` and ``rollback`` load and verify the version first and
move the pointer only when it passes, so a refused model never becomes active. Blocking: call these
from a worker thread inside the gateway.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import msgspec

from avila_edge.anomaly.manifest import MANIFEST, MODEL, ModelRefused
from avila_edge.anomaly.onnx_model import OnnxModel
from avila_edge.anomaly.state import write_durably

SHIPPED = Path(__file__).parent / "models"
POINTER = "active.json"


class Pointer(msgspec.Struct):
    version: str
    history: list[str] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: str
    folder: Path
    shipped: bool


@dataclass(frozen=True, slots=True)
class Loaded:
    """What ``load_active`` found: the model that runs, and every newer version it had to refuse."""

    model: OnnxModel
    refused: tuple[str, ...]


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Order ``2`` < ``10`` and ``1.2`` < ``1.10``; non-numeric parts compare as text."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in version.split("."))


class ModelRegistry:
    def __init__(self, root: Path, *, shipped: Path | None = SHIPPED) -> None:
        self.root = root
        self.shipped = shipped

    # -- what there is ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        found = set()
        for base in self._bases():
            if base[0].is_dir():
                found |= {p.name for p in base[0].iterdir() if p.is_dir() and not p.name.startswith(".")}
        return sorted(found)

    def versions(self, name: str) -> list[ModelVersion]:
        by_version: dict[str, ModelVersion] = {}
        for base, shipped in reversed(self._bases()):  # the registry's own copy wins
            folder = base / name
            if not folder.is_dir():
                continue
            for v in folder.iterdir():
                if not v.name.startswith(".") and v.is_dir() and ((v / MANIFEST).exists() or (v / MODEL).exists()):
                    by_version[v.name] = ModelVersion(name, v.name, v, shipped)
        return sorted(by_version.values(), key=lambda m: version_key(m.version))

    def find(self, name: str, version: str) -> ModelVersion:
        for v in self.versions(name):
            if v.version == version:
                return v
        known = ", ".join(v.version for v in self.versions(name)) or "none"
        raise ModelRefused(f"model {name} has no version '{version}' in {self.root} (versions: {known})")

    def pointer(self, name: str) -> Pointer | None:
        path = self.root / name / POINTER
        try:
            return msgspec.json.decode(path.read_bytes(), type=Pointer)
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ModelRefused(f"{path}: unreadable activation pointer: {exc}") from None

    def active(self, name: str) -> str | None:
        p = self.pointer(name)
        if p is not None:
            return p.version
        versions = self.versions(name)
        return versions[-1].version if versions else None

    def stamp(self, name: str) -> float:
        """Changes whenever ``activate``/``rollback`` moved the pointer (the running service polls it)."""
        try:
            return (self.root / name / POINTER).stat().st_mtime_ns / 1e9
        except OSError:
            return 0.0

    # -- loading and switching --------------------------------------------------------------------

    def load(self, name: str, version: str) -> OnnxModel:
        model = OnnxModel.load(self.find(name, version).folder)
        m = model.manifest
        if (m.name, m.version) != (name, version):
            raise ModelRefused(f"{name}@{version}: its manifest names {m.ref}")
        return model

    def load_active(self, name: str) -> Loaded:
        """The active version, or when it is refused the newest loadable version of its history."""
        active = self.active(name)
        if active is None:
            raise ModelRefused(f"no model named '{name}' in {self.root} or the shipped models")
        p = self.pointer(name)
        candidates = [active, *reversed(p.history if p else [])]
        refused: list[str] = []
        for version in candidates:
            try:
                return Loaded(self.load(name, version), tuple(refused))
            except ModelRefused as exc:
                refused.append(str(exc))
        raise ModelRefused("; ".join(refused))

    def activate(self, name: str, version: str) -> OnnxModel:
        """Verify ``version`` and make it active; the current one goes on the rollback history."""
        model = self.load(name, version)
        current = self.active(name)
        p = self.pointer(name) or Pointer(version)
        history = [v for v in p.history if v != version]
        if current is not None and current != version:
            history.append(current)
        self._write_pointer(name, Pointer(version, history))
        return model

    def rollback(self, name: str) -> OnnxModel:
        """Make the previously active version active again (verified first)."""
        p = self.pointer(name)
        if p is None or not p.history:
            raise ModelRefused(f"model {name} has no earlier active version to roll back to")
        previous = p.history[-1]
        model = self.load(name, previous)
        self._write_pointer(name, Pointer(previous, p.history[:-1]))
        return model

    def install(self, package: Path) -> ModelVersion:
        """Copy a package folder (model.onnx + manifest.json) into the registry, verified; not activated."""
        model = OnnxModel.load(package)
        m = model.manifest
        target = self.root / m.name / m.version
        if target.exists():
            raise ModelRefused(f"{m.ref} is already in the registry at {target}")
        tmp = target.with_name(f".{m.version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for file in (MODEL, MANIFEST):
            shutil.copyfile(package / file, tmp / file)
        os.replace(tmp, target)
        return ModelVersion(m.name, m.version, target, shipped=False)

    def _write_pointer(self, name: str, pointer: Pointer) -> None:
        write_durably(self.root / name / POINTER, msgspec.json.encode(pointer) + b"\n")

    def _bases(self) -> list[tuple[Path, bool]]:
        bases = [(self.root, False)]
        if self.shipped is not None:
            bases.append((self.shipped, True))
        return bases
