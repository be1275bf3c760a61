"""Anomaly detection on twins: feature windows, the streaming baseline, ONNX models with manifests,
the model registry (versions, activation, rollback) and the service that journals anomaly events.

onnxruntime is imported only when a model is loaded (``onnx_model.py``).
"""

from avila_edge.anomaly.detectors import AdaptiveThreshold, Baseline, Scored, Transition, explain
from avila_edge.anomaly.manifest import Manifest, ModelRefused, read_manifest
from avila_edge.anomaly.registry import ModelRegistry, ModelVersion
from avila_edge.anomaly.service import AnomalyCounters, AnomalyService, registry_of
from avila_edge.anomaly.windows import Window, WindowBuilder

__all__ = [
    "AdaptiveThreshold",
    "AnomalyCounters",
    "AnomalyService",
    "Baseline",
    "Manifest",
    "ModelRefused",
    "ModelRegistry",
    "ModelVersion",
    "Scored",
    "Transition",
    "Window",
    "WindowBuilder",
    "explain",
    "read_manifest",
    "registry_of",
]
