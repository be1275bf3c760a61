"""``avila-edge model list|activate|rollback|verify|train`` on a registry folder."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from avila_edge.anomaly.registry import SHIPPED, ModelRegistry
from avila_edge.cli import main
from avila_edge.config.model import JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal
from hil.plant import PumpPlant

from .conftest import add_version, plant, site_text


def test_list_activate_verify_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = ModelRegistry(tmp_path / "models")
    add_version(reg, "pump-ae", "2", SHIPPED / "pump-ae" / "1")
    args = ["--registry", str(reg.root)]
    assert main(["model", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "pump-ae" in out and "   1        shipped" in out and " * 2        registry 8 features, 10 s window" in out
    assert main(["model", "activate", *args, "pump-ae", "1"]) == 0
    assert "pump-ae@1 is active (was 2)" in capsys.readouterr().out
    assert main(["model", "verify", *args, "pump-ae"]) == 0
    assert "pump-ae@1: ok (sha256 " in capsys.readouterr().out
    assert main(["model", "rollback", *args, "pump-ae"]) == 0
    assert "pump-ae@2 is active again (was 1)" in capsys.readouterr().out


def test_a_corrupted_version_is_refused_by_verify_and_activate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    v2 = add_version(reg, "pump-ae", "2", SHIPPED / "pump-ae" / "1")
    (v2 / "model.onnx").write_bytes(b"garbage")
    args = ["--registry", str(reg.root)]
    assert main(["model", "verify", *args, "pump-ae", "2"]) == 1
    assert "avila-edge: pump-ae@2: " in capsys.readouterr().err
    assert main(["model", "activate", *args, "pump-ae", "2"]) == 1
    assert "corrupted or replaced file" in capsys.readouterr().err
    assert reg.pointer("pump-ae") is None


def test_train_explains_what_to_install_without_the_build_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from avila_edge.anomaly.train import TrainingUnavailable, fit_autoencoder

    monkeypatch.setitem(sys.modules, "sklearn.neural_network", None)  # as on a gateway without the train extra
    with pytest.raises(TrainingUnavailable, match=r"pip install 'avila-edge\[train\]'"):
        fit_autoencoder(
            __import__("numpy").zeros((60, 8)), plant.FEATURES, name="x", version="1", window=10.0, out=tmp_path
        )


@pytest.mark.parametrize(("kind", "output"), [("autoencoder", "reconstruction"), ("isolation-forest", "score")])
def test_train_fits_a_model_on_local_history_and_adds_it_to_the_registry(
    kind: str, output: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    site = tmp_path / "site.yaml"
    section = "anomaly:\n  detectors:\n    - {id: health, asset_type: pump, detector: onnx, model: pump-ae}\n"
    site.write_text(site_text(section, state_dir="./state"))
    state = tmp_path / "state"
    state.mkdir()

    async def fill() -> None:
        async with Journal.open(state / "journal.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
            pump = PumpPlant(seed=4)
            schedule = plant.varying_duty(4)
            batch: list[Reading] = []
            for second in range(1, 1800):
                schedule(pump, second)
                pump.step(1.0)
                ns = int((plant.START + second) * 1e9)
                batch += [Reading(point=f"pump1/{k}", value=v, ts_source=ns, ts_gateway=ns)
                          for k, v in plant.samples(pump).items()]  # fmt: skip
                if len(batch) > 5000:
                    await journal.append(batch)
                    batch = []
            await journal.append(batch)

    asyncio.run(fill())
    args = ["--config", str(site), "--asset", "pump1", "--name", "pump-ae", "--version", "9",
            "--from", "2023-11-14T00:00:00Z", "--to", "2023-11-16T00:00:00Z", "--activate", "--kind", kind]  # fmt: skip
    assert main(["model", "train", *args]) == 0
    captured = capsys.readouterr()
    assert "pump-ae@9: trained on 17" in captured.err and "pump-ae@9 is active" in captured.out
    reg = ModelRegistry(state / "models")
    assert reg.active("pump-ae") == "9"
    manifest = reg.load("pump-ae", "9").manifest
    assert manifest.threshold.reference is not None and manifest.output.kind.value == output
