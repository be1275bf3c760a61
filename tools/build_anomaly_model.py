"""Build the shipped pump autoencoder from the hil/ plant (reproducible: fixed seeds).

    .venv/bin/pip install -e '.[train]'
    .venv/bin/python tools/build_anomaly_model.py [--version 1] [--hours 48]

Writes ``avila_edge/anomaly/models/pump-ae/<version>/`` (model.onnx + manifest.json). The training
data is normal operation only: duty points between 1200 and 1800 rpm changing every 10-30 minutes
and a daily ambient cycle, skipping the first hour while the motor warms up.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from anomaly_plant import FEATURES, WINDOW, run, varying_duty  # this folder is on sys.path when run as a script

from avila_edge.anomaly.manifest import ThresholdPolicy
from avila_edge.anomaly.train import fit_autoencoder

ROOT = Path(__file__).resolve().parents[1]
NAME = "pump-ae"
SEED = 7


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="1")
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--out", type=Path, default=ROOT / "avila_edge" / "anomaly" / "models")
    args = parser.parse_args()
    started = time.perf_counter()
    warm = 3600.0
    rows = np.array(
        [w.row for w in run(args.hours * 3600 + warm, varying_duty(SEED), seed=SEED) if w.start >= 1_700_000_000 + warm]
    )
    simulated = time.perf_counter() - started
    manifest = fit_autoencoder(
        rows,
        FEATURES,
        name=NAME,
        version=args.version,
        window=WINDOW,
        out=args.out / NAME / args.version,
        seed=SEED,
        threshold=ThresholdPolicy(quantile=0.999, margin=2.0, warmup=60, history=2000),
        description=(
            f"pump autoencoder 8-16-4-16-8 on {len(rows)} ten-second windows of normal hil/ plant operation "
            f"(seed {SEED}, duty 1200-1800 rpm)"
        ),
    )
    print(
        f"{manifest.ref}: {len(rows)} windows simulated in {simulated:.1f} s, fitted in "
        f"{time.perf_counter() - started - simulated:.1f} s; reference threshold {manifest.threshold.reference}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
