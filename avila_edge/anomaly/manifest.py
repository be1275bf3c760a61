"""The manifest that travels with every ONNX model: what goes in, what comes out, how to threshold it.

``manifest.json`` beside ``model.onnx``::

    {"format": 1, "name": "pump-ae", "version": "1", "sha256": "<hex of model.onnx>",
     "description": "...", "created": "2026-11-25T10:00:00Z",
     "input": {"name": "input", "window": 10.0,
               "features": [{"point": "flow", "aggregation": "mean", "mean": 105.2, "std": 9.1}, ...]},
     "output": {"name": "reconstruction", "kind": "reconstruction"},
     "threshold": {"quantile": 0.995, "margin": 1.5, "warmup": 30, "history": 2000, "reference": 0.41}}

Inputs are float32 of shape ``(batch, len(features))``, each feature normalised as
``(value - mean) / std``. ``kind`` ``reconstruction``: the output has the input's shape and the score
is the mean squared error over features; ``score``: the output is ``(batch, 1)`` and is the score.
``reference`` is the threshold measured on the training data: it is used until an asset has finished
its own warm-up.
"""

from __future__ import annotations

import enum
from pathlib import Path

import msgspec

from avila_edge.config.anomaly import Aggregation, FeatureConfig
from avila_edge.core import GatewayError

MANIFEST = "manifest.json"
MODEL = "model.onnx"
FORMAT = 1


class ModelRefused(GatewayError):
    """A model package cannot be used: missing file, wrong hash, or inputs/outputs unlike its manifest."""


class OutputKind(enum.StrEnum):
    RECONSTRUCTION = "reconstruction"
    SCORE = "score"


class ManifestFeature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    point: str
    aggregation: Aggregation = Aggregation.MEAN
    mean: float = 0.0
    std: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.point}.{self.aggregation.value}"

    def config(self) -> FeatureConfig:
        return FeatureConfig(self.point, self.aggregation)


class ManifestInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    window: float
    features: tuple[ManifestFeature, ...]


class ManifestOutput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    kind: OutputKind = OutputKind.RECONSTRUCTION


class ThresholdPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    quantile: float = 0.995
    margin: float = 1.5
    warmup: int = 30
    history: int = 2000
    reference: float | None = None


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    version: str
    sha256: str
    input: ManifestInput
    output: ManifestOutput
    threshold: ThresholdPolicy = ThresholdPolicy()
    format: int = FORMAT
    description: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        if not self.input.features:
            raise ValueError("input.features is empty")
        if self.input.window <= 0:
            raise ValueError("input.window must be greater than 0")
        if any(not f.std > 0 for f in self.input.features):
            raise ValueError("every feature's std must be greater than 0")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def read_manifest(folder: Path) -> Manifest:
    """The manifest in ``folder``; ``ModelRefused`` naming the file when it is missing or malformed."""
    path = folder / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelRefused(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise ModelRefused(f"{path}: malformed manifest: {exc}") from None
    if manifest.format != FORMAT:
        raise ModelRefused(f"{path}: manifest format {manifest.format} is not supported (expected {FORMAT})")
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> None:
    data = msgspec.json.format(msgspec.json.encode(manifest), indent=2)
    (folder / MANIFEST).write_bytes(data + b"\n")
