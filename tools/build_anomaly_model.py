"""Build the shipped pump models from the hil/ plant (reproducible: fixed seeds, byte-identical output).

    .venv/bin/pip install -c scripts/build-tools.txt -e '.[train]'   # the pinned versions: same bytes
    .venv/bin/python tools/build_anomaly_model.py [--model pump-ae|pump-iforest|all] [--version 1] [--hours 48]

Writes ``avila_edge/anomaly/models/<name>/<version>/`` (model.onnx + manifest.json) for

* ``pump-ae``: an MLP autoencoder 8-16-4-16-8 (output ``reconstruction``);
* ``pump-iforest``: an IsolationForest of 100 trees on the whitened principal components of the features
  and their products (output ``score``).

Both learn from the same rows: normal operation only, duty points between 1200 and 1800 rpm changing
every 10-30 minutes and a daily ambient cycle, skipping the first hour while the motor warms up.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from anomaly_plant import FEATURES, WINDOW, run, varying_duty  # this folder is on sys.path when run as a script

from avila_edge.anomaly.manifest import Manifest, ThresholdPolicy
from avila_edge.anomaly.train import fit_autoencoder, fit_isolation_forest

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
WARM = 3600.0
MODELS = ("pump-ae", "pump-iforest")
SAME_BITS = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
"""The environment the fits run under. OpenBLAS picks its kernels by CPU (SkylakeX on an AVX-512 Xeon,
Haswell on an AVX2 one), and they round differently, so the same rows give a different PCA and other
trees; an unfixed hash seed moves allocations, and with them the bits, about one run in four; one
BLAS thread whatever the cores. Every x86-64 CPU with AVX2 runs the Haswell kernels (elsewhere the
build still works, with other bits: ``same_bits_here``). ``main`` starts itself again under this
environment."""


def same_bits_here() -> bool:
    """Whether this machine can run the pinned kernels: x86-64 with AVX2."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and " avx2" in cpuinfo.read_text()


def same_bits_env() -> dict[str, str]:
    """This process's environment with ``SAME_BITS`` over it: what a reproducible fit runs under."""
    return {**os.environ, **SAME_BITS}


def training_rows(hours: float, seed: int = SEED) -> np.ndarray:  # type: ignore[type-arg]
    """The feature rows both shipped models learn from."""
    windows = run(hours * 3600 + WARM, varying_duty(seed), seed=seed)
    return np.array([w.row for w in windows if w.start >= 1_700_000_000 + WARM])


def build(name: str, rows: np.ndarray, version: str, out: Path) -> Manifest:  # type: ignore[type-arg]
    common = f"{len(rows)} ten-second windows of normal hil/ plant operation (seed {SEED}, duty 1200-1800 rpm)"
    if name == "pump-ae":
        return fit_autoencoder(
            rows, FEATURES, name=name, version=version, window=WINDOW, out=out / name / version, seed=SEED,
            threshold=ThresholdPolicy(quantile=0.999, margin=2.0, warmup=60, history=2000),
            description=f"pump autoencoder 8-16-4-16-8 on {common}",
        )  # fmt: skip
    return fit_isolation_forest(
        rows, FEATURES, name=name, version=version, window=WINDOW, out=out / name / version, seed=SEED,
        threshold=ThresholdPolicy(quantile=0.999, margin=1.0, warmup=60, history=2000),
        description=f"pump IsolationForest, 100 trees of 1024 samples, whitened degree-2 components, on {common}",
    )  # fmt: skip


def main() -> int:
    if not same_bits_here():
        print("warning: not an x86-64 CPU with AVX2: the fits differ from the shipped bytes", file=sys.stderr)
    elif any(os.environ.get(k) != v for k, v in SAME_BITS.items()):
        os.execve(sys.executable, sys.orig_argv, same_bits_env())  # noqa: S606 - this script again, same options
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=(*MODELS, "all"), default="all")
    parser.add_argument("--version", default="1")
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--out", type=Path, default=ROOT / "avila_edge" / "anomaly" / "models")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = training_rows(args.hours)
    print(f"{len(rows)} windows simulated in {time.perf_counter() - started:.1f} s")
    for name in MODELS if args.model == "all" else (args.model,):
        started = time.perf_counter()
        manifest = build(name, rows, args.version, args.out)
        print(
            f"{manifest.ref}: fitted in {time.perf_counter() - started:.1f} s; "
            f"reference threshold {manifest.threshold.reference}; sha256 {manifest.sha256}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
