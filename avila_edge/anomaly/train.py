"""Fit a model on windows of normal operation and export it as a model package (ONNX + manifest).

Two kinds: an MLP autoencoder (``fit_autoencoder``, what ``avila-edge model train`` builds; output
``reconstruction``) and an IsolationForest on the whitened principal components of the rows and
their products
(``fit_isolation_forest``; output ``score``, the forest's anomaly score ``-score_samples`` in (0, 1]).

Needs the build tools of the ``train`` extra (``pip install 'avila-edge[train]'``: scikit-learn and
skl2onnx); the gateway itself only needs onnxruntime to run the result. Seeds are fixed and graph
names are set, so the same rows give a byte-identical model. ``Fitted.estimator`` is the
scikit-learn model the ONNX file came from, so tests can compare the two on the same rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
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
    OutputKind,
    ThresholdPolicy,
    write_manifest,
)
from avila_edge.anomaly.windows import WindowBuilder
from avila_edge.config.anomaly import FeatureConfig
from avila_edge.core import GatewayError, Quality, Reading

logger = logging.getLogger(__name__)

INPUT = "input"
OUTPUT = "reconstruction"
SCORE = "score"
HIDDEN = (16, 4, 16)
TREES = 100
MAX_SAMPLES = 1024
MIN_ROWS = 50
RANK_TOL = 1e-6
"""Principal components whose variance is below this fraction of the largest are dropped, not whitened."""
OPSET = {"": 17, "ai.onnx.ml": 3}

Rows = npt.NDArray[np.float64]


class TrainingUnavailable(GatewayError):
    """The build tools (scikit-learn, skl2onnx) are not installed, or there is too little history."""


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fitted model: the scikit-learn estimator, its ONNX export and the normalisation it was fitted under."""

    estimator: Any
    onnx: bytes
    kind: OutputKind
    output: str
    mean: Rows
    std: Rows
    scores: Rows
    """The score of every training row (what the reference threshold is a quantile of)."""

    def normalise(self, rows: Rows) -> npt.NDArray[np.float32]:
        return ((rows - self.mean) / self.std).astype(np.float32)


def rows_from_readings(
    readings: Iterable[Reading], asset: str, features: Sequence[FeatureConfig], window: float
) -> Rows:
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


@contextlib.contextmanager
def _build_tools() -> Iterator[None]:
    """Around the imports of the build tools: their absence becomes ``TrainingUnavailable`` saying what to install."""
    try:
        yield
    except ImportError as exc:
        raise TrainingUnavailable(
            f"training needs scikit-learn and skl2onnx ({exc.name} is missing): pip install 'avila-edge[train]'"
        ) from None


def _normalisation(rows: Rows, width: int) -> tuple[Rows, Rows]:
    if rows.ndim != 2 or rows.shape[1] != width:
        raise TrainingUnavailable(f"rows have shape {list(rows.shape)}; {width} features expected")
    if len(rows) < MIN_ROWS:
        raise TrainingUnavailable(f"only {len(rows)} complete windows of history; at least {MIN_ROWS} are needed")
    mean = rows.mean(axis=0)
    return mean, np.maximum(rows.std(axis=0), 1e-3 * np.abs(mean) + 1e-6)


def autoencoder(rows: Rows, *, seed: int = 0, hidden: tuple[int, ...] = HIDDEN, label: str = "model") -> Fitted:
    """An MLP autoencoder (tanh) fitted on the normalised ``rows``; its export outputs ``[batch, width]``."""
    with _build_tools():
        from skl2onnx import convert_sklearn  # noqa: PLC0415 - build-time tools, not on the gateway
        from skl2onnx.common.data_types import FloatTensorType  # noqa: PLC0415
        from sklearn.neural_network import MLPRegressor  # noqa: PLC0415
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - comes with scikit-learn

    width = rows.shape[1] if rows.ndim == 2 else 0
    mean, std = _normalisation(rows, width)
    x = ((rows - mean) / std).astype(np.float32)
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden, activation="tanh", max_iter=2000, random_state=seed, tol=1e-6, early_stopping=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with threadpool_limits(limits=1):  # one BLAS thread: the same bits on every run
            mlp.fit(x, x)
    for w in caught:  # e.g. not converged on a short history: say so, the manifest's threshold still fits it
        logger.warning("training %s: %s", label, w.message)
    onx = convert_sklearn(mlp, initial_types=[(INPUT, FloatTensorType([None, width]))], target_opset=17)
    _reshape_output(onx, width)
    scores = np.square(x - mlp.predict(x)).mean(axis=1)
    return Fitted(mlp, onx.SerializeToString(), OutputKind.RECONSTRUCTION, OUTPUT, mean, std, scores)


def isolation_forest(
    rows: Rows, *, seed: int = 0, trees: int = TREES, max_samples: int = MAX_SAMPLES, label: str = "model"
) -> Fitted:
    """An IsolationForest on the whitened principal components of the normalised ``rows`` and their
    products (degree 2). Normal operation lies on a curved surface (pressure grows with the square of
    the speed, current with its cube); with the products it is nearly flat, and whitening turns "this
    feature does not fit the others" (flow low for the speed) into a large value on a minor component,
    which the forest's axis-parallel cuts isolate quickly. The export outputs ``[batch, 1]``:
    ``-score_samples``, about 0.4-0.5 for normal rows and towards 1 for outliers."""
    with _build_tools():
        from skl2onnx import convert_sklearn  # noqa: PLC0415 - build-time tools, not on the gateway
        from skl2onnx.common.data_types import FloatTensorType  # noqa: PLC0415
        from sklearn.decomposition import PCA  # noqa: PLC0415
        from sklearn.ensemble import IsolationForest  # noqa: PLC0415
        from sklearn.pipeline import Pipeline  # noqa: PLC0415
        from sklearn.preprocessing import PolynomialFeatures, StandardScaler  # noqa: PLC0415
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - comes with scikit-learn

    width = rows.shape[1] if rows.ndim == 2 else 0
    mean, std = _normalisation(rows, width)
    x = ((rows - mean) / std).astype(np.float32)
    products = Pipeline([("products", PolynomialFeatures(2, include_bias=False)), ("scale", StandardScaler())])
    with threadpool_limits(limits=1):
        spectrum = PCA(random_state=seed).fit(products.fit_transform(x)).explained_variance_
    kept = int(np.count_nonzero(spectrum > RANK_TOL * spectrum[0]))  # whitening ~0 variance amplifies rounding
    pipeline = Pipeline(
        [
            *products.steps,
            ("whiten", PCA(n_components=kept, whiten=True, random_state=seed)),
            ("forest", IsolationForest(n_estimators=trees, max_samples=min(max_samples, len(x)), random_state=seed)),
        ]
    )
    with threadpool_limits(limits=1):  # one BLAS thread: the same bits on every run, so the same trees
        pipeline.fit(x)
    # the preprocessing as skl2onnx exports it, the forest as one tree ensemble (_forest_score)
    steps = Pipeline(pipeline.steps[:-1])
    onx = convert_sklearn(steps, initial_types=[(INPUT, FloatTensorType([None, width]))], target_opset=OPSET)
    _forest_score(onx, pipeline.named_steps["forest"])
    scores = -pipeline.score_samples(x)
    return Fitted(pipeline, onx.SerializeToString(), OutputKind.SCORE, SCORE, mean, std, scores)


def write_package(
    fitted: Fitted,
    features: Sequence[FeatureConfig],
    *,
    name: str,
    version: str,
    window: float,
    out: Path,
    threshold: ThresholdPolicy,
    description: str,
) -> Manifest:
    """Write ``out/model.onnx`` and ``out/manifest.json``; the reference threshold is ``quantile`` of the
    training scores times ``margin``."""
    reference = float(np.quantile(fitted.scores, threshold.quantile)) * threshold.margin
    manifest = Manifest(
        name=name,
        version=version,
        sha256=hashlib.sha256(fitted.onnx).hexdigest(),
        input=ManifestInput(
            INPUT,
            window,
            tuple(
                ManifestFeature(f.point, f.aggregation, float(m), float(s))
                for f, m, s in zip(features, fitted.mean, fitted.std, strict=True)
            ),
        ),
        output=ManifestOutput(fitted.output, fitted.kind),
        threshold=ThresholdPolicy(
            threshold.quantile, threshold.margin, threshold.warmup, threshold.history, round(reference, 6)
        ),
        description=description,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL).write_bytes(fitted.onnx)
    write_manifest(out, manifest)
    return manifest


def fit_autoencoder(
    rows: Rows,
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
    """Fit a ``hidden``-layer MLP autoencoder on ``rows`` and write its package to ``out``."""
    width = len(features)
    if rows.ndim != 2 or rows.shape[1] != width:
        raise TrainingUnavailable(f"rows have shape {list(rows.shape)}; {width} features expected")
    fitted = autoencoder(rows, seed=seed, hidden=hidden, label=f"{name}@{version}")
    return write_package(
        fitted, features, name=name, version=version, window=window, out=out,
        threshold=threshold or ThresholdPolicy(),
        description=description or f"MLP autoencoder {width}-{'-'.join(map(str, hidden))}-{width}, {len(rows)} windows",
    )  # fmt: skip


def fit_isolation_forest(
    rows: Rows,
    features: Sequence[FeatureConfig],
    *,
    name: str,
    version: str,
    window: float,
    out: Path,
    seed: int = 0,
    trees: int = TREES,
    max_samples: int = MAX_SAMPLES,
    threshold: ThresholdPolicy | None = None,
    description: str = "",
) -> Manifest:
    """Fit an IsolationForest (on whitened principal components) on ``rows`` and write its package to ``out``."""
    width = len(features)
    if rows.ndim != 2 or rows.shape[1] != width:
        raise TrainingUnavailable(f"rows have shape {list(rows.shape)}; {width} features expected")
    fitted = isolation_forest(rows, seed=seed, trees=trees, max_samples=max_samples, label=f"{name}@{version}")
    return write_package(
        fitted, features, name=name, version=version, window=window, out=out,
        threshold=threshold or ThresholdPolicy(quantile=0.999, margin=1.0),
        description=description or f"IsolationForest, {trees} trees, whitened degree-2 components, {len(rows)} windows",
    )  # fmt: skip


def _reshape_output(onx: Any, width: int) -> None:
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


def _path_length(n: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The average path length of an unsuccessful search in a binary search tree of ``n`` samples
    (the IsolationForest normaliser c(n): 0 for n <= 1, 1 for n = 2)."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 3.0)
    c = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, c))


def _forest_score(onx: Any, forest: Any) -> None:
    """Append the IsolationForest to the preprocessing graph ``onx`` as ONE ``TreeEnsembleRegressor``
    and output ``score`` = ``-score_samples`` = 2^(-mean path length / c(max_samples)).

    Each leaf holds its share of the mean path length (its depth plus c(its training samples), over
    trees times c(max_samples)), so the ensemble's sum is the ratio scikit-learn computes. skl2onnx's own
    export walks the trees one by one (about 3,000 nodes for 100 trees): its per-node overhead made a
    one-row call cost ~2 ms; this graph has a few nodes more than the preprocessing. A split's
    threshold is rounded down to float32 where rounding to nearest would move it above the float64
    threshold, so every float32 input takes the branch scikit-learn's tree takes."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415 - comes with skl2onnx

    graph = onx.graph
    graph.name = "isolation_forest"  # skl2onnx names graphs with a random uuid: fixed, so rebuilds are byte-identical
    whitened = graph.output[0].name
    denominator = len(forest.estimators_) * float(_path_length(np.array([forest.max_samples_]))[0])
    nodes: dict[str, list[Any]] = {
        k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes", "true", "false")
    }
    targets: dict[str, list[Any]] = {"treeids": [], "nodeids": [], "weights": []}
    for t, (tree, features) in enumerate(zip(forest.estimators_, forest.estimators_features_, strict=True)):
        tt = tree.tree_
        depth = np.zeros(tt.node_count, dtype=np.int64)
        for i in range(tt.node_count):  # children come after their parent in scikit-learn's node order
            if tt.children_left[i] != -1:
                depth[tt.children_left[i]] = depth[tt.children_right[i]] = depth[i] + 1
        share = (depth + _path_length(tt.n_node_samples)) / denominator
        for i in range(tt.node_count):
            leaf = tt.children_left[i] == -1
            nodes["treeids"].append(t)
            nodes["nodeids"].append(i)
            nodes["featureids"].append(0 if leaf else int(features[tt.feature[i]]))
            threshold = float(tt.threshold[i])
            value = np.float32(threshold)
            if not leaf and float(value) > threshold:
                value = np.nextafter(value, np.float32(-np.inf))
            nodes["values"].append(0.0 if leaf else float(value))
            nodes["modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            nodes["true"].append(0 if leaf else int(tt.children_left[i]))
            nodes["false"].append(0 if leaf else int(tt.children_right[i]))
            if leaf:
                targets["treeids"].append(t)
                targets["nodeids"].append(i)
                targets["weights"].append(float(share[i]))
    graph.node.append(helper.make_node(
        "TreeEnsembleRegressor", [whitened], ["path_ratio"], name="forest", domain="ai.onnx.ml",
        n_targets=1, aggregate_function="SUM", post_transform="NONE",
        nodes_treeids=nodes["treeids"], nodes_nodeids=nodes["nodeids"], nodes_featureids=nodes["featureids"],
        nodes_values=nodes["values"], nodes_modes=nodes["modes"], nodes_truenodeids=nodes["true"],
        nodes_falsenodeids=nodes["false"], target_treeids=targets["treeids"], target_nodeids=targets["nodeids"],
        target_ids=[0] * len(targets["nodeids"]), target_weights=targets["weights"],
    ))  # fmt: skip
    graph.initializer.append(numpy_helper.from_array(np.array([2.0], dtype=np.float32), "score_base"))
    graph.node.append(helper.make_node("Neg", ["path_ratio"], ["path_ratio_neg"], name="score_neg"))
    graph.node.append(helper.make_node("Pow", ["score_base", "path_ratio_neg"], [SCORE], name="score_pow"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, [None, 1]))
