"""Fit an autoencoder on windows of normal operation and export it as a model package (ONNX + manifest).

Needs the build tools of the ``train`` extra (``pip install 'avila-edge[train]'``: scikit-learn and
skl2onnx); the gateway itself only needs onnxruntime to run the result. Seeds are fixed, so the same
rows give the same model.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from avila_edge.anomaly.manifest import (
    MODEL,
    Manifest,
    ManifestFeature,
    ManifestInput,
    ManifestOutput,
    ThresholdPolicy,
    write_manifest,
)
from avila_edge.anomaly.windows import WindowBuilder
from avila_edge.config.anomaly import FeatureConfig
from avila_edge.core import GatewayError, Quality, Reading

logger = logging.getLogger(__name__)

INPUT = "input"
OUTPUT = "reconstruction"
HIDDEN = (16, 4, 16)


class TrainingUnavailable(GatewayError):
    """The build tools (scikit-learn, skl2onnx) are not installed, or there is too little history."""


def rows_from_readings(
    readings: Iterable[Reading], asset: str, features: Sequence[FeatureConfig], window: float
) -> npt.NDArray[np.float64]:
    """Feature rows of ``asset`` built from readings in journal order, as the live service builds them."""
    builder = WindowBuilder(asset, features, window)
    wanted = builder.points
    rows = []
    for r in readings:
        a, _, point = r.point.partition("/")
        if a != asset or point not in wanted or r.quality is not Quality.GOOD:
            continue
        if not isinstance(r.value, int | float):
            continue
        w = builder.add(point, float(r.value), r.ts_gateway / 1e9)
        if w is not None:
            rows.append(w.row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))


def fit_autoencoder(
    rows: npt.NDArray[np.float64],
    features: Sequence[FeatureConfig],
    *,
    name: str,
    version: str,
    window: float,
    out: Path,
    seed: int = 0,
    hidden: tuple[int, ...] = HIDDEN,
    threshold: ThresholdPolicy | None = None,
    description: str = "",
) -> Manifest:
    """Fit ``hidden``-layer MLP autoencoder on ``rows`` and write ``out/model.onnx`` + ``out/manifest.json``."""
    try:
        from skl2onnx import convert_sklearn  # noqa: PLC0415 - build-time tools, not on the gateway
        from skl2onnx.common.data_types import FloatTensorType  # noqa: PLC0415
        from sklearn.neural_network import MLPRegressor  # noqa: PLC0415
    except ImportError as exc:
        raise TrainingUnavailable(
            f"training needs scikit-learn and skl2onnx ({exc.name} is missing): pip install 'avila-edge[train]'"
        ) from None
    threshold = threshold or ThresholdPolicy()
    width = len(features)
    if rows.ndim != 2 or rows.shape[1] != width:
        raise TrainingUnavailable(f"rows have shape {list(rows.shape)}; {width} features expected")
    if len(rows) < 50:
        raise TrainingUnavailable(f"only {len(rows)} complete windows of history; at least 50 are needed")
    mean = rows.mean(axis=0)
    std = np.maximum(rows.std(axis=0), 1e-3 * np.abs(mean) + 1e-6)
    x = ((rows - mean) / std).astype(np.float32)
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden, activation="tanh", max_iter=2000, random_state=seed, tol=1e-6, early_stopping=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlp.fit(x, x)
    for w in caught:  # e.g. not converged on a short history: say so, the manifest's threshold still fits it
        logger.warning("training %s@%s: %s", name, version, w.message)
    onx = convert_sklearn(mlp, initial_types=[(INPUT, FloatTensorType([None, width]))], target_opset=17)
    _fix_output(onx, width)
    data = onx.SerializeToString()
    recon = mlp.predict(x)
    scores = np.square(x - recon).mean(axis=1)
    reference = float(np.quantile(scores, threshold.quantile)) * threshold.margin
    manifest = Manifest(
        name=name,
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        input=ManifestInput(
            INPUT,
            window,
            tuple(
                ManifestFeature(f.point, f.aggregation, float(m), float(s))
                for f, m, s in zip(features, mean, std, strict=True)
            ),
        ),
        output=ManifestOutput(OUTPUT),
        threshold=ThresholdPolicy(
            threshold.quantile, threshold.margin, threshold.warmup, threshold.history, round(reference, 6)
        ),
        description=description or f"MLP autoencoder {width}-{'-'.join(map(str, hidden))}-{width}, {len(rows)} windows",
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL).write_bytes(data)
    write_manifest(out, manifest)
    return manifest


def _fix_output(onx: Any, width: int) -> None:
    """skl2onnx shapes a multi-output MLPRegressor as (N*width, 1): reshape its output to (-1, width)
    and give it a plain name; name the graph deterministically."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415 - comes with skl2onnx

    graph = onx.graph
    graph.name = "autoencoder"  # skl2onnx names graphs with a random uuid: fixed, so rebuilds are byte-identical
    old = graph.output[0].name
    shape_name = "reconstruction_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([-1, width], dtype=np.int64), shape_name))
    graph.node.append(helper.make_node("Reshape", [old, shape_name], [OUTPUT], name="reconstruction_reshape"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, width]))
