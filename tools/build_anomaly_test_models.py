"""Build the small ONNX files the anomaly tests need (needs the ``onnx`` package of the train extra).

    .venv/bin/python tools/build_anomaly_test_models.py

``tests/anomaly/data/slow/1``: an 8-feature "autoencoder" that returns its input unchanged after
~50 ms of matrix products (onnxruntime cannot fold them away because they start from the input). It
stands in for a model too slow for its gateway.

``tests/anomaly/data/distance/1``: a plain-score model (``output.kind: score``): the mean squared
normalised input, with the i-th feature's std set to i + 1.

``tests/anomaly/data/lookup/1``: an "autoencoder" that returns its input unchanged but first looks the
window's speed (feature 0, in rpm) up in a table of 2000 entries. It loads and passes the probe; a
window above 1999 rpm makes onnxruntime fail at run time (Gather: index out of bounds), as a model
meets values its graph cannot take.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from anomaly_plant import FEATURES  # this folder is on sys.path when run as a script
from onnx import TensorProto, helper, numpy_helper

from avila_edge.anomaly.manifest import (
    Manifest,
    ManifestFeature,
    ManifestInput,
    ManifestOutput,
    OutputKind,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 1024
PRODUCTS = 3
LOOKUP = 2000


def slow_model() -> bytes:
    width = len(FEATURES)
    inits = [
        numpy_helper.from_array(np.array([SIZE, SIZE], dtype=np.int64), "big_shape"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(1e-3, dtype=np.float32), "small"),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "small"], ["seed"]),
        helper.make_node("Expand", ["seed", "big_shape"], ["m0"]),
    ]
    for i in range(PRODUCTS):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "m0"], [f"m{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"m{PRODUCTS}"], ["busy"], keepdims=0),
        helper.make_node("Mul", ["busy", "zero"], ["none"]),
        helper.make_node("Add", ["input", "none"], ["reconstruction"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, [None, width])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="avila-edge tests")
    model.ir_version = 8
    return model.SerializeToString()


def distance_model() -> bytes:
    """A plain-score model: the mean squared normalised input, shape (batch, 1)."""
    width = len(FEATURES)
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["input", "input"], ["squares"]),
            helper.make_node("ReduceMean", ["squares", "axes"], ["score"], keepdims=1),
        ],
        "distance",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="avila-edge tests")
    model.ir_version = 8
    return model.SerializeToString()


def lookup_model() -> bytes:
    """Input unchanged, after a table lookup indexed by feature 0 that fails beyond the table's end."""
    width = len(FEATURES)
    inits = [
        numpy_helper.from_array(np.zeros(LOOKUP, dtype=np.float32), "table"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "speed_column"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Gather", ["input", "speed_column"], ["speed"], axis=1),
        helper.make_node("Cast", ["speed"], ["code"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "code"], ["looked_up"], axis=0),
        helper.make_node("Mul", ["looked_up", "zero"], ["nothing"]),
        helper.make_node("Unsqueeze", ["nothing", "axes"], ["column"]),
        helper.make_node("Add", ["input", "column"], ["reconstruction"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lookup",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, [None, width])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="avila-edge tests")
    model.ir_version = 8
    return model.SerializeToString()


def write(name: str, data: bytes, output: ManifestOutput, description: str) -> None:
    folder = ROOT / "tests" / "anomaly" / "data" / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(data)
    features = tuple(ManifestFeature(f.point, f.aggregation, 0.0, 1.0 + i) for i, f in enumerate(FEATURES))
    write_manifest(
        folder,
        Manifest(
            name=name,
            version="1",
            sha256=hashlib.sha256(data).hexdigest(),
            input=ManifestInput("input", 10.0, features),
            output=output,
            description=description,
        ),
    )
    print(f"wrote {folder}")


def main() -> int:
    write("slow", slow_model(), ManifestOutput("reconstruction"),
          "returns its input after busy work: a model too slow for its gateway")  # fmt: skip
    write("distance", distance_model(), ManifestOutput("score", OutputKind.SCORE),
          "a plain score: the mean squared normalised input")  # fmt: skip
    write("lookup", lookup_model(), ManifestOutput("reconstruction"),
          "returns its input after a lookup by speed that fails above 1999 rpm")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
