"""A verified ONNX model: the only module that imports onnxruntime (lazily, when a model is loaded).

``OnnxModel.load`` refuses a package whose file does not hash to the manifest's sha256, that
onnxruntime cannot open, or whose input name, rank, width or output do not match the manifest.
``score`` runs in the caller's thread: the service calls it from its inference worker thread.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from avila_edge.anomaly.detectors import Scored
from avila_edge.anomaly.manifest import MODEL, Manifest, ModelRefused, OutputKind, read_manifest

Matrix = npt.NDArray[np.float32]

THREADS = 1
"""onnxruntime threads per model: gateways have 2-4 cores shared with everything else."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OnnxModel:
    """One loaded model package; ``score`` maps raw feature rows to scores and per-feature contributions."""

    def __init__(self, manifest: Manifest, session: Any, folder: Path) -> None:
        self.manifest = manifest
        self.folder = folder
        self._session = session
        features = manifest.input.features
        self._mean = np.array([f.mean for f in features], dtype=np.float32)
        self._std = np.array([f.std for f in features], dtype=np.float32)

    @classmethod
    def load(cls, folder: Path) -> OnnxModel:
        """Verify and open the package in ``folder`` (blocking: call it from a worker thread)."""
        manifest = read_manifest(folder)
        path = folder / MODEL
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise ModelRefused(f"{manifest.ref}: cannot read {path}: {exc.strerror or exc}") from None
        if digest != manifest.sha256.lower():
            raise ModelRefused(
                f"{manifest.ref}: {path} has sha256 {digest[:16]}…, the manifest says {manifest.sha256[:16]}… "
                "(corrupted or replaced file)"
            )
        import onnxruntime as ort  # noqa: PLC0415 - only gateways with an ONNX detector pay for it

        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # fatal only: errors are raised, reported by the caller with context
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable graphs
            raise ModelRefused(f"{manifest.ref}: onnxruntime cannot open {path}: {exc}") from None
        _check_signature(manifest, session)
        model = cls(manifest, session, folder)
        model._probe()
        return model

    def _probe(self) -> None:
        """Run two rows of training means: the output must have the declared shape and be finite."""
        m = self.manifest
        x = np.zeros((2, len(m.input.features)), dtype=np.float32)
        try:
            out = np.asarray(self._session.run([m.output.name], {m.input.name: x})[0])
        except Exception as exc:  # onnxruntime's own errors
            raise ModelRefused(f"{m.ref}: the model fails on a probe batch: {exc}") from None
        expected = (2, x.shape[1] if m.output.kind is OutputKind.RECONSTRUCTION else 1)
        if out.shape != expected:
            raise ModelRefused(f"{m.ref}: a batch of 2 gives output shape {list(out.shape)}, expected {list(expected)}")
        if not np.isfinite(out).all():
            raise ModelRefused(f"{m.ref}: the model gives non-finite output for the training means")

    def normalise(self, rows: Matrix) -> Matrix:
        return ((rows - self._mean) / self._std).astype(np.float32, copy=False)

    def score(self, rows: Matrix) -> list[Scored]:
        """One ``Scored`` per raw feature row (a batch of any size)."""
        x = self.normalise(rows)
        m = self.manifest
        out = np.asarray(self._session.run([m.output.name], {m.input.name: x})[0], dtype=np.float64)
        x64 = x.astype(np.float64)
        if m.output.kind is OutputKind.RECONSTRUCTION:
            recon = out.reshape(x.shape)
            err = np.square(x64 - recon)
            scores = err.mean(axis=1)
            expected = recon * self._std + self._mean
        else:
            scores = out.reshape(len(x))
            err = np.square(x64)  # explain a plain score by the deviation from the training mean
            expected = np.broadcast_to(self._mean.astype(np.float64), x.shape)
        total = err.sum(axis=1, keepdims=True)
        shares = err / np.where(total > 0, total, 1.0)
        return [
            Scored(score, tuple(share), tuple(value))
            for score, share, value in zip(scores.tolist(), shares.tolist(), expected.tolist(), strict=True)
        ]


def _check_signature(m: Manifest, session: Any) -> None:
    width = len(m.input.features)
    inputs = session.get_inputs()
    outputs = {o.name: o for o in session.get_outputs()}
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelRefused(f"{m.ref}: the model takes {len(inputs)} inputs ({names}); the manifest describes one")
    given = inputs[0]
    if given.name != m.input.name:
        raise ModelRefused(f"{m.ref}: the model's input is '{given.name}', the manifest says '{m.input.name}'")
    if given.type != "tensor(float)":
        raise ModelRefused(f"{m.ref}: input '{given.name}' is {given.type}; float32 is expected")
    shape = list(given.shape)
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
        raise ModelRefused(
            f"{m.ref}: input '{given.name}' has shape {shape}; the manifest's {width} features need [batch, {width}]"
        )
    out = outputs.get(m.output.name)
    if out is None:
        raise ModelRefused(f"{m.ref}: no output '{m.output.name}' (the model has {', '.join(outputs)})")
    expected = width if m.output.kind is OutputKind.RECONSTRUCTION else 1
    oshape = list(out.shape)
    if len(oshape) != 2 or (isinstance(oshape[1], int) and oshape[1] != expected):
        raise ModelRefused(
            f"{m.ref}: output '{out.name}' has shape {oshape}; a {m.output.kind.value} output needs [batch, {expected}]"
        )
