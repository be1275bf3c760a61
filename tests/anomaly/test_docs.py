"""docs/anomaly.md: its complete example site loads and runs the detectors it describes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from avila_edge.anomaly import AnomalyService, ModelRegistry
from avila_edge.config import parse_config
from avila_edge.config.anomaly import DetectorKind
from avila_edge.core import Event, ManualClock
from avila_edge.twins.service import TwinService

ROOT = Path(__file__).resolve().parents[2]


def example() -> str:
    page = (ROOT / "docs" / "anomaly.md").read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: anomaly-site -->\n```yaml\n(.*?)```", page, re.DOTALL)
    assert len(found) == 1
    return str(found[0])


async def test_the_example_site_loads_and_builds_both_detectors(tmp_path: Path) -> None:
    config = parse_config(example(), filename="anomaly-site.yaml")
    config = msgspec.structs.replace(config, state_dir=tmp_path)
    health, bearing = config.anomaly.detectors
    assert health.detector is DetectorKind.ONNX and health.model == "pump-ae"
    assert bearing.asset == "pump2" and bearing.window == 30.0 and len(bearing.features) == 4
    assert config.anomaly.state_save_interval == 60.0
    recorded: list[Event] = []

    async def record(events: list[Event]) -> None:
        recorded.extend(events)

    service = AnomalyService(config, TwinService(config), record, clock=ManualClock(),
                             registry=ModelRegistry(tmp_path / "models"))  # fmt: skip
    await service.start()
    service.close()
    assert [e.attrs["model"] for e in recorded] == ["pump-ae@1"]
    assert [w.config.id for w in service._watches["pump1"]] == ["health"]
    assert sorted(w.config.id for w in service._watches["pump2"]) == ["bearing", "health"]

    page = (ROOT / "docs" / "anomaly.md").read_text(encoding="utf-8")
    shown = re.findall(r"<!-- example: anomaly-twin -->\n```json\n(.*?)```", page, re.DOTALL)
    documented = json.loads("{" + shown[0] + "}")["anomaly"]["health"]
    watch = service._watches["pump1"][0]
    assert set(documented) == set(service._blank_info(watch)), "the page shows the twin's keys"


def test_the_page_names_every_cli_command() -> None:
    page = (ROOT / "docs" / "anomaly.md").read_text(encoding="utf-8")
    for command in ("list", "activate", "rollback", "verify", "train"):
        assert f"avila-edge model {command}" in page
