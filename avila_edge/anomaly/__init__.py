"""Anomaly detection on twins: feature windows, the streaming baseline, ONNX models with manifests,
the model registry (versions, activation, rollback), the service that journals anomaly events, and
the state file that carries what the detectors learned across restarts.

Each name is imported from its module on first use, so a gateway with no anomaly section (or the
CLI's ``model`` commands, registered on every start) never loads numpy; onnxruntime is imported only
when a model is loaded (``onnx_model.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avila_edge.anomaly.detectors import AdaptiveThreshold, Baseline, Scored, Transition, explain
    from avila_edge.anomaly.manifest import Manifest, ModelRefused, read_manifest
    from avila_edge.anomaly.registry import ModelRegistry, ModelVersion
    from avila_edge.anomaly.service import AnomalyCounters, AnomalyService, registry_of
    from avila_edge.anomaly.state import STATE_FILE, DetectorState, StateStore
    from avila_edge.anomaly.windows import Window, WindowBuilder

_HOMES = {
    "detectors": ("AdaptiveThreshold", "Baseline", "Scored", "Transition", "explain"),
    "manifest": ("Manifest", "ModelRefused", "read_manifest"),
    "registry": ("ModelRegistry", "ModelVersion"),
    "service": ("AnomalyCounters", "AnomalyService", "registry_of"),
    "state": ("STATE_FILE", "DetectorState", "StateStore"),
    "windows": ("Window", "WindowBuilder"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


if not TYPE_CHECKING:  # to mypy the names are the imports above, so a misspelt one is still an error

    def __getattr__(name: str) -> Any:
        module = _HOME.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "STATE_FILE",
    "AdaptiveThreshold",
    "AnomalyCounters",
    "AnomalyService",
    "Baseline",
    "DetectorState",
    "Manifest",
    "ModelRefused",
    "ModelRegistry",
    "ModelVersion",
    "Scored",
    "StateStore",
    "Transition",
    "Window",
    "WindowBuilder",
    "explain",
    "read_manifest",
    "registry_of",
]
