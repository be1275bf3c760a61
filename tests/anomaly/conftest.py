"""Shared pieces of the anomaly tests: the plant row generator from tools/, registries in temp dirs."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from avila_edge.anomaly.registry import SHIPPED, ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def _load_plant() -> ModuleType:
    name = "anomaly_plant"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "anomaly_plant.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


plant = _load_plant()


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """An empty registry folder on top of the shipped models."""
    return ModelRegistry(tmp_path / "models")


@pytest.fixture
def own_registry(tmp_path: Path) -> ModelRegistry:
    """A registry holding a copy of the shipped pump-ae@1 and nothing shipped: free to corrupt."""
    root = tmp_path / "models"
    shutil.copytree(SHIPPED / "pump-ae" / "1", root / "pump-ae" / "1")
    return ModelRegistry(root, shipped=None)


def add_version(registry: ModelRegistry, name: str, version: str, source: Path) -> Path:
    """Copy a package into the registry as ``name@version`` (its manifest rewritten to say so)."""
    import msgspec

    from avila_edge.anomaly.manifest import read_manifest, write_manifest

    target = registry.root / name / version
    shutil.copytree(source, target)
    write_manifest(target, msgspec.structs.replace(read_manifest(target), name=name, version=version))
    return target


POINTS = ("speed_setpoint", "flow", "pressure", "current", "vibration", "motor_temperature")


def site_text(anomaly: str, *, pumps: tuple[str, ...] = ("pump1",), state_dir: str = "./state") -> str:
    """A site with Modbus pumps carrying the plant's points, and the given ``anomaly:`` section."""
    assets = "".join(f"  - {{id: {p}, type: pump}}\n" for p in pumps)
    points = "".join(
        f"      - {{id: {p}/{name}, address: {{table: holding, address: {i * 2 + k * 20}}}, type: float32}}\n"
        for k, p in enumerate(pumps)
        for i, name in enumerate(POINTS)
    )
    return (
        f"site: {{id: test}}\nstate_dir: {state_dir}\n"
        "asset_types:\n  - id: pump\n"
        f"assets:\n{assets}"
        "devices:\n  - id: plc1\n    driver: modbus\n    connection: {host: 127.0.0.1, port: 15020}\n    points:\n"
        f"{points}{anomaly}"
    )
