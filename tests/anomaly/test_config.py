"""The anomaly section: defaults, detector targets and features checked with FILE:LINE errors."""

from __future__ import annotations

import pytest

from avila_edge.config import parse_config
from avila_edge.config.anomaly import Aggregation, AnomalyConfig, DetectorKind
from avila_edge.core import ConfigError

from .conftest import site_text

GOOD = """anomaly:
  queue: 128
  detectors:
    - id: health
      asset_type: pump
      detector: onnx
      model: pump-ae
      threshold: {raise_after: 3, clear_after: 5}
    - id: drift
      asset: pump1
      window: 30s
      features:
        - {point: vibration, aggregation: max}
        - {point: flow}
      threshold: {quantile: 0.99, warmup: 120, manual: 4.5}
"""


def test_no_anomaly_section_means_no_detectors() -> None:
    assert parse_config(site_text(""), filename="site.yaml").anomaly == AnomalyConfig()


def test_a_complete_anomaly_section_loads_into_frozen_structs() -> None:
    a = parse_config(site_text(GOOD), filename="site.yaml").anomaly
    assert a.queue == 128 and len(a.detectors) == 2
    health, drift = a.detectors
    assert health.detector is DetectorKind.ONNX and health.model == "pump-ae" and health.threshold.raise_after == 3
    assert drift.detector is DetectorKind.BASELINE and drift.window == 30.0
    assert [f.name for f in drift.features] == ["vibration.max", "flow.mean"]
    assert drift.features[0].aggregation is Aggregation.MAX
    assert drift.threshold.manual == 4.5 and drift.threshold.margin is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("anomaly:\n  detectors:\n    - {id: a, asset_type: pump, features: [{point: vibrations}]}\n",
         "site.yaml:{line}: anomaly.detectors[0].features[0].point: 'vibrations' is not a point or derived value of pump1"),
        ("anomaly:\n  detectors:\n    - {id: a, asset_type: pumps, features: [{point: flow}]}\n",
         "site.yaml:{line}: anomaly.detectors[0].asset_type: asset type 'pumps' is not declared"),
        ("anomaly:\n  detectors:\n    - {id: a, asset: pump1, asset_type: pump, features: [{point: flow}]}\n",
         "site.yaml:{line}: anomaly.detectors[0]: name exactly one of asset_type"),
        ("anomaly:\n  detectors:\n    - {id: a, asset: pump1, detector: onnx}\n",
         "site.yaml:{line}: anomaly.detectors[0].model: an onnx detector names its model"),
        ("anomaly:\n  detectors:\n    - {id: a, asset: pump1}\n",
         "site.yaml:{line}: anomaly.detectors[0].features: a baseline detector needs at least one feature"),
        ("anomaly:\n  detectors:\n    - {id: a, asset: pump1, features: [{point: flow}], threshold: {quantile: 1.5}}\n",
         "site.yaml:{line}: anomaly.detectors[0].threshold.quantile: must be between 0 and 1"),
        ("anomaly:\n  detectors:\n    - {id: a, asset: pump1, features: [{point: flow, aggregation: median}]}\n",
         "site.yaml:{line}: anomaly.detectors[0].features[0].aggregation:"),
        ("anomaly:\n  queue: 0\n", "site.yaml:{line}: anomaly.queue: must be at least 1"),
    ],
    ids=["unknown point", "unknown type", "two targets", "onnx without model", "baseline without features",
         "quantile", "aggregation", "queue"],
)  # fmt: skip
def test_anomaly_mistakes_are_reported_at_their_line(section: str, expected: str) -> None:
    text = site_text(section)
    with pytest.raises(ConfigError) as err:
        parse_config(text, filename="site.yaml")
    first_line = text.splitlines().index("anomaly:") + 1
    messages = [str(i) for i in err.value.issues]
    prefix, _, rest = expected.partition("{line}")
    hits = [m for m in messages if m.startswith(prefix) and rest in m]
    assert hits, messages
    line = int(hits[0].split(":")[1])
    assert first_line <= line <= first_line + 3
