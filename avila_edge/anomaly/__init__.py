"""Anomaly detection on twins: feature windows, the streaming baseline, ONNX models with manifests,
the model registry (versions, activation, rollback), the service that journals anomaly events, and
the state file that carries what the detectors learned across restarts.

onnxruntime is imported only when a model is loaded (``onnx_model.py``).
"""

from avila_edge.anomaly.detectors import AdaptiveThreshold, Baseline, Scored, Transition, explain
from avila_edge.anomaly.manifest import Manifest, ModelRefused, read_manifest
from avila_edge.anomaly.registry import ModelRegistry, ModelVersion
from avila_edge.anomaly.service import AnomalyCounters, AnomalyService, registry_of
from avila_edge.anomaly.state import STATE_FILE, DetectorState, StateStore
from avila_edge.anomaly.windows import Window, WindowBuilder

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
