"""The shipped models are what ``tools/build_anomaly_model.py`` builds from the hil/ plant with fixed
seeds (byte for byte), and each ONNX file gives the outputs of the scikit-learn model it was exported
from on a fixed dataset of normal and faulty rows. Needs the build tools (the test extra has them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import subprocess
import sys
from importlib import metadata
from types import ModuleType

import numpy as np
import pytest

from avila_edge.anomaly.manifest import OutputKind, read_manifest
from avila_edge.anomaly.onnx_model import OnnxModel
from avila_edge.anomaly.registry import SHIPPED
from avila_edge.anomaly.train import Fitted
from hil.plant import PumpPlant

from .conftest import ROOT, plant

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

pytestmark = pytest.mark.slow  # rebuilding the shipped models: 48 h of simulated plant, two fits


def _build_script() -> ModuleType:
    sys.path.insert(0, str(ROOT / "tools"))  # the script imports anomaly_plant as its neighbour
    try:
        spec = importlib.util.spec_from_file_location("build_anomaly_model", ROOT / "tools" / "build_anomaly_model.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "tools"))


# the fits as the build script runs them, in a process of their own under its environment (SAME_BITS):
# this one's BLAS kernels were chosen for this CPU when numpy was imported
FIT = """
import pickle, sys
sys.path.insert(0, sys.argv[1])
import build_anomaly_model as script
from avila_edge.anomaly.train import autoencoder, isolation_forest
rows = script.training_rows(48.0)
fitted = {"pump-ae": autoencoder(rows, seed=script.SEED), "pump-iforest": isolation_forest(rows, seed=script.SEED)}
with open(sys.argv[2], "wb") as out:
    pickle.dump(fitted, out)
"""


def _tools_against_pins() -> str:
    """What differs between the installed build tools and scripts/build-tools.txt, for a failed rebuild."""
    pins = dict(
        line.split("==") for line in (ROOT / "scripts" / "build-tools.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    off = [f"{p} {metadata.version(p)} (pinned {v})" for p, v in pins.items() if metadata.version(p) != v]
    if off:
        return f"installed build tools differ from scripts/build-tools.txt: {', '.join(off)}"
    return "same tools: did the fit's environment (SAME_BITS in tools/build_anomaly_model.py) change?"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Fitted]:
    """The shipped models' estimators, fitted again as the build script fits them."""
    out = tmp_path_factory.mktemp("rebuilt") / "fitted.pickle"
    env = _build_script().same_bits_env()
    subprocess.run([sys.executable, "-c", FIT, str(ROOT / "tools"), str(out)], env=env, check=True, timeout=300)
    with out.open("rb") as f:
        fitted: dict[str, Fitted] = pickle.load(f)  # written just now by the fit above
    return fitted


@pytest.fixture(scope="module")
def fixed_rows() -> np.ndarray:  # type: ignore[type-arg]
    """Two hours of normal operation then an hour with a partly blocked inlet and a worn bearing (seed 31)."""
    normal = plant.varying_duty(31)

    def with_faults(p: PumpPlant, t: float) -> None:
        normal(p, t)
        if t == 7200.0:
            p.block_inlet(0.2)
            p.degrade_bearing(0.5)

    return np.asarray([w.row for w in plant.run(3 * 3600.0, with_faults, seed=31)], dtype=np.float64)


@pytest.mark.parametrize("name", ["pump-ae", "pump-iforest"])
def test_the_build_script_rebuilds_the_shipped_model_byte_for_byte(name: str, rebuilt: dict[str, Fitted]) -> None:
    if not _build_script().same_bits_here():
        pytest.skip("the shipped bytes are reproducible on x86-64 CPUs with AVX2 (OpenBLAS's Haswell kernels)")
    manifest = read_manifest(SHIPPED / name / "1")
    assert hashlib.sha256(rebuilt[name].onnx).hexdigest() == manifest.sha256, _tools_against_pins()
    assert [f.mean for f in manifest.input.features] == pytest.approx(rebuilt[name].mean.tolist(), rel=1e-12)
    assert [f.std for f in manifest.input.features] == pytest.approx(rebuilt[name].std.tolist(), rel=1e-12)


def test_the_shipped_autoencoder_reconstructs_as_its_scikit_learn_model(
    rebuilt: dict[str, Fitted],
    fixed_rows: np.ndarray,  # type: ignore[type-arg]
) -> None:
    fitted = rebuilt["pump-ae"]
    model = OnnxModel.load(SHIPPED / "pump-ae" / "1")
    assert model.manifest.output.kind is OutputKind.RECONSTRUCTION
    x = fitted.normalise(fixed_rows)
    recon = fitted.estimator.predict(x)
    expected_scores = np.square(x - recon).mean(axis=1)
    scored = model.score(fixed_rows.astype(np.float32))
    assert len(scored) == len(fixed_rows) > 1000
    assert np.allclose([s.score for s in scored], expected_scores, rtol=1e-4, atol=1e-6)
    assert np.allclose([s.expected for s in scored], recon * fitted.std + fitted.mean, rtol=1e-4, atol=1e-4)
    assert max(expected_scores) > 10 * (model.manifest.threshold.reference or 0), "the dataset holds faulty rows"


def test_the_shipped_isolation_forest_scores_as_its_scikit_learn_model(
    rebuilt: dict[str, Fitted],
    fixed_rows: np.ndarray,  # type: ignore[type-arg]
) -> None:
    fitted = rebuilt["pump-iforest"]
    model = OnnxModel.load(SHIPPED / "pump-iforest" / "1")
    assert model.manifest.output.kind is OutputKind.SCORE
    expected_scores = -fitted.estimator.score_samples(fitted.normalise(fixed_rows))
    scored = model.score(fixed_rows.astype(np.float32))
    diff = np.abs(np.array([s.score for s in scored]) - expected_scores)
    # a row whose whitened value lies within float32 rounding of a split goes down the other branch of
    # that tree (one path of 100 changes by a level or two): rare, and small
    assert np.mean(diff < 1e-5) >= 0.995, np.sort(diff)[-10:]
    assert diff.max() < 0.01
    assert max(expected_scores) > (model.manifest.threshold.reference or 1), "the dataset holds faulty rows"
