"""Model packages are verified at load: a corrupted file or a manifest unlike the model is refused with a
clear error, activation never moves to a refused version, and rollback restores the previous one."""

from __future__ import annotations

import shutil

import msgspec
import numpy as np
import pytest

from avila_edge.anomaly import ModelRefused, ModelRegistry, read_manifest
from avila_edge.anomaly.manifest import ManifestInput, OutputKind, write_manifest
from avila_edge.anomaly.registry import SHIPPED, version_key
from hil.plant import PumpPlant

from .conftest import DATA, add_version, plant


def test_the_shipped_model_verifies_and_reconstructs_normal_rows_closely(registry: ModelRegistry) -> None:
    assert registry.names() == ["pump-ae", "pump-iforest"]
    assert registry.active("pump-ae") == "1"
    model = registry.load("pump-ae", "1")
    m = model.manifest
    assert m.ref == "pump-ae@1" and len(m.input.features) == 8
    normal = np.asarray([[f.mean for f in m.input.features]] * 3, dtype=np.float32)
    scored = model.score(normal)
    assert len(scored) == 3
    assert all(s.score < (m.threshold.reference or 0) for s in scored)
    assert abs(sum(scored[0].shares) - 1.0) < 1e-6


def test_the_shipped_isolation_forest_verifies_and_scores_normal_rows_below_its_reference(
    registry: ModelRegistry,
) -> None:
    model = registry.load("pump-iforest", "1")
    m = model.manifest
    assert m.output.kind is OutputKind.SCORE and m.output.name == "score"
    assert [f.name for f in m.input.features] == [f.name for f in registry.load("pump-ae", "1").manifest.input.features]

    def blocked_after_an_hour(p: PumpPlant, t: float) -> None:
        plant.steady_duty(1500.0)(p, t)
        if t == 3600.0:
            p.block_inlet(0.3)

    rows = [w.row for w in plant.run(3900.0, blocked_after_an_hour, seed=3)]
    low, high = model.score(np.asarray([rows[-40], rows[-2]], dtype=np.float32))
    assert 0 < low.score < (m.threshold.reference or 0) < high.score <= 1
    assert max(range(8), key=lambda i: high.shares[i]) == 1, "the share names flow"


def test_a_corrupted_model_file_is_refused_naming_the_hash(own_registry: ModelRegistry) -> None:
    path = own_registry.root / "pump-ae" / "1" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelRefused, match=r"pump-ae@1: .*model.onnx has sha256 .* the manifest says .*corrupted"):
        own_registry.load("pump-ae", "1")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: msgspec.structs.replace(i, name="x"), "the model's input is 'input', the manifest says 'x'"),
        (
            lambda i: msgspec.structs.replace(i, features=i.features[:7]),
            r"has shape \[None, 8\]; the manifest's 7 features",
        ),
    ],
    ids=["input name", "feature count"],
)
def test_a_manifest_that_does_not_match_its_model_is_refused(own_registry: ModelRegistry, change, message) -> None:  # type: ignore[no-untyped-def]
    folder = own_registry.root / "pump-ae" / "1"
    m = read_manifest(folder)
    write_manifest(folder, msgspec.structs.replace(m, input=change(m.input)))
    with pytest.raises(ModelRefused, match=message):
        own_registry.load("pump-ae", "1")


def test_a_malformed_manifest_is_refused_naming_the_file(own_registry: ModelRegistry) -> None:
    (own_registry.root / "pump-ae" / "1" / "manifest.json").write_text('{"name": "pump-ae"')
    with pytest.raises(ModelRefused, match=r"manifest.json: malformed manifest"):
        own_registry.load("pump-ae", "1")


def test_activation_refuses_a_bad_version_and_rollback_restores_the_previous(own_registry: ModelRegistry) -> None:
    reg = own_registry
    add_version(reg, "pump-ae", "2", reg.root / "pump-ae" / "1")
    bad = add_version(reg, "pump-ae", "3", reg.root / "pump-ae" / "1")
    (bad / "model.onnx").write_bytes(b"not a model")
    assert reg.active("pump-ae") == "3", "with no pointer the newest version is active"
    reg.activate("pump-ae", "1")
    reg.activate("pump-ae", "2")
    assert reg.active("pump-ae") == "2"
    with pytest.raises(ModelRefused, match="pump-ae@3"):
        reg.activate("pump-ae", "3")
    assert reg.active("pump-ae") == "2", "a refused version never becomes active"
    assert reg.rollback("pump-ae").manifest.ref == "pump-ae@1"
    assert reg.active("pump-ae") == "1"
    with pytest.raises(ModelRefused, match="pump-ae@3"):  # active before the first activation, now corrupt
        reg.rollback("pump-ae")
    assert reg.active("pump-ae") == "1"


def test_rollback_without_history_is_refused(own_registry: ModelRegistry) -> None:
    with pytest.raises(ModelRefused, match="no earlier active version"):
        own_registry.rollback("pump-ae")


def test_a_version_corrupted_after_activation_falls_back_to_the_previous_one(own_registry: ModelRegistry) -> None:
    reg = own_registry
    v2 = add_version(reg, "pump-ae", "2", reg.root / "pump-ae" / "1")
    reg.activate("pump-ae", "1")
    reg.activate("pump-ae", "2")
    (v2 / "model.onnx").write_bytes((v2 / "model.onnx").read_bytes()[:-10])
    loaded = reg.load_active("pump-ae")
    assert loaded.model.manifest.ref == "pump-ae@1"
    assert len(loaded.refused) == 1 and "pump-ae@2" in loaded.refused[0]


def test_a_package_whose_manifest_names_another_version_is_refused(own_registry: ModelRegistry) -> None:
    shutil.copytree(own_registry.root / "pump-ae" / "1", own_registry.root / "pump-ae" / "7")
    with pytest.raises(ModelRefused, match="pump-ae@7: its manifest names pump-ae@1"):
        own_registry.load("pump-ae", "7")


def test_install_copies_a_verified_package_without_activating_it(registry: ModelRegistry) -> None:
    installed = registry.install(DATA / "slow" / "1")
    assert installed.folder == registry.root / "slow" / "1"
    assert registry.names() == ["pump-ae", "pump-iforest", "slow"]
    assert registry.pointer("slow") is None
    with pytest.raises(ModelRefused, match="already in the registry"):
        registry.install(DATA / "slow" / "1")


def test_versions_order_numerically_and_registry_copies_win_over_shipped(registry: ModelRegistry) -> None:
    assert sorted(["10", "2", "1.10", "1.2"], key=version_key) == ["1.2", "1.10", "2", "10"]
    add_version(registry, "pump-ae", "1", SHIPPED / "pump-ae" / "1")
    assert [(v.version, v.shipped) for v in registry.versions("pump-ae")] == [("1", False)]


def test_the_manifest_rejects_an_empty_feature_list(own_registry: ModelRegistry) -> None:
    folder = own_registry.root / "pump-ae" / "1"
    m = read_manifest(folder)
    raw = msgspec.json.decode(msgspec.json.encode(m))
    raw["input"]["features"] = []
    (folder / "manifest.json").write_bytes(msgspec.json.encode(raw))
    with pytest.raises(ModelRefused, match=r"input\.features is empty"):
        read_manifest(folder)
    assert isinstance(m.input, ManifestInput)


def test_a_plain_score_model_is_explained_by_the_deviation_from_the_training_mean() -> None:
    from avila_edge.anomaly.onnx_model import OnnxModel

    model = OnnxModel.load(DATA / "distance" / "1")
    row = np.zeros((1, 8), dtype=np.float32)
    row[0, 5] = 12.0  # feature 5 has std 6: z = 2
    row[0, 0] = 1.0  # feature 0 has std 1: z = 1
    (scored,) = model.score(row)
    assert scored.score == pytest.approx((4.0 + 1.0) / 8)
    assert scored.shares[5] == pytest.approx(0.8) and scored.shares[0] == pytest.approx(0.2)
    assert scored.expected == (0.0,) * 8
