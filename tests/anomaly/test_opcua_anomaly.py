"""A SCADA client of the gateway's OPC UA server sees an asset's anomaly start: live variables under the
asset's ``Anomaly`` folder, and an event; the variables refuse writes. The gateway polls the hil PLC."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from avila_edge.anomaly.service import _targets
from avila_edge.config import parse_config
from avila_edge.core import SystemClock
from avila_edge.north.opcua_anomaly import NULL_DATETIME, detectors, explanation, values
from avila_edge.north.opcua_values import to_ns
from avila_edge.runtime.gateway import Gateway
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import free_port

from ..north.test_opcua_server import north, secure_client, wait_listening
from .conftest import site_text
from .test_gateway import SITE

NS = "urn:avila-edge:site:anomaly"
WITHIN = 8.0


async def test_a_scada_subscription_sees_an_anomaly_start_and_clear_and_cannot_write_its_variables(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with ModbusPlc() as plc:
        text = SITE.format(state=tmp_path / "state", port=plc.port) + "north:\n" + north(tmp_path)(port) + "\n"
        config = parse_config(text, filename="site.yaml")
        async with Gateway.running(config, clock=SystemClock()) as gateway:
            await wait_listening(port)
            async with await secure_client(tmp_path, port) as client:
                ns = await client.get_namespace_index(NS)
                pump = client.get_node(ua.NodeId("pump1", ns))
                folder = await pump.get_child(f"{ns}:Anomaly")
                health = await folder.get_child(f"{ns}:health")
                names = {(await c.read_browse_name()).Name for c in await health.get_children()}
                assert names == {"Active", "Since", "Score", "Threshold", "Learning", "Detector", "Model",
                                 "Explanation", "Problem"}  # fmt: skip
                nodes = {n: client.get_node(ua.NodeId(f"pump1/anomaly/health/{n}", ns)) for n in names}

                changes: dict[str, list[ua.DataValue]] = {n: [] for n in names}
                by_node = {node.nodeid: n for n, node in nodes.items()}
                events: asyncio.Queue[Any] = asyncio.Queue()

                class Handler:
                    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                        changes[by_node[node.nodeid]].append(data.monitored_item.Value)

                    def event_notification(self, event: Any) -> None:
                        events.put_nowait(event)

                sub = await client.create_subscription(50, Handler())
                await sub.subscribe_data_change(list(nodes.values()))
                await sub.subscribe_events(client.nodes.server)

                def last(name: str) -> ua.DataValue | None:
                    return changes[name][-1] if changes[name] else None

                def shows(name: str, value: object) -> bool:
                    dv = last(name)
                    return dv is not None and dv.Value is not None and dv.Value.Value == value

                async with asyncio.timeout(WITHIN):  # the baseline has learned: a score, no anomaly
                    while (s := last("Score")) is None or s.Value is None or s.Value.Value is None:
                        await asyncio.sleep(0.05)
                assert shows("Active", False)
                assert shows("Since", NULL_DATETIME), "OPC UA's null DateTime: no anomaly"
                assert shows("Threshold", 30.0), "the manual threshold of the config"
                assert shows("Detector", "baseline")
                assert shows("Model", "")
                assert shows("Problem", "")

                plc.plant.block_inlet(0.6)
                async with asyncio.timeout(WITHIN):
                    while not shows("Active", True) or shows("Since", NULL_DATETIME) or not changes["Since"]:
                        await asyncio.sleep(0.05)
                    event = await events.get()
                twin: dict[str, Any] = gateway.twins.snapshot("pump1")["anomaly"]["health"]  # type: ignore[index]
                active, since = last("Active"), last("Since")
                assert active is not None and since is not None
                assert active.StatusCode is not None and active.StatusCode.is_good()
                assert twin["active"] is True
                assert since.Value is not None and to_ns(since.Value.Value) == twin["since"] // 1000 * 1000
                assert to_ns(active.SourceTimestamp) == twin["since"] // 1000 * 1000, "the anomaly's start time"
                assert to_ns(since.SourceTimestamp) == twin["since"] // 1000 * 1000
                score = await nodes["Score"].read_data_value()
                assert score.StatusCode is not None and score.StatusCode.is_good()
                assert score.Value is not None and isinstance(score.Value.Value, float)
                assert score.SourceTimestamp is not None
                explanation = await nodes["Explanation"].read_value()
                assert explanation.split(" ", 1)[0] in ("flow.mean", "current.mean", "pressure.mean")

                assert event.SourceName == "pump1/health"
                assert event.SourceNode == health.nodeid
                assert event.Severity == 700
                assert "pump1/health" in event.Message.Text
                assert to_ns(event.Time) == twin["since"] // 1000 * 1000

                for name, value, kind in (
                    ("Active", False, ua.VariantType.Boolean),
                    ("Score", 0.0, ua.VariantType.Double),
                    ("Since", dt.datetime.now(dt.UTC), ua.VariantType.DateTime),
                    ("Explanation", "", ua.VariantType.String),
                ):
                    with pytest.raises(ua.UaStatusCodeError) as refused:
                        await nodes[name].write_value(ua.DataValue(ua.Variant(value, kind)))
                    assert refused.value.code == ua.StatusCodes.BadUserAccessDenied
                assert await nodes["Active"].read_value() is True
                assert gateway.twins.snapshot("pump1")["anomaly"]["health"]["active"] is True  # type: ignore[index]

                plc.plant.clear_faults()  # the inlet is free again: the anomaly clears
                async with asyncio.timeout(WITHIN):
                    while not (shows("Active", False) and shows("Since", NULL_DATETIME)):
                        await asyncio.sleep(0.05)
                cleared = last("Active")
                assert cleared is not None and cleared.SourceTimestamp is not None
                assert cleared.SourceTimestamp > active.SourceTimestamp  # type: ignore[operator]


def test_the_address_space_has_anomaly_nodes_for_exactly_the_detectors_the_service_runs() -> None:
    anomaly = (
        "anomaly:\n  detectors:\n"
        "    - {id: health, asset_type: pump, features: [{point: flow}]}\n"
        "    - {id: health, asset: pump2, features: [{point: current}]}\n"
        "    - {id: bearing, asset: pump2, features: [{point: vibration}]}\n"
    )
    config = parse_config(site_text(anomaly, pumps=("pump1", "pump2", "pump3")), filename="site.yaml")
    runs: dict[str, list[str]] = {}
    for asset, d in _targets(config):
        runs.setdefault(asset, []).append(d.id)
    assert detectors(config) == runs == {"pump1": ["health"], "pump2": ["health", "bearing"], "pump3": ["health"]}


def test_a_learning_detector_shows_no_score_yet_and_an_idle_one_says_why() -> None:
    learning = values({"active": False, "since": None, "detector": "baseline", "model": None, "score": None,
                       "threshold": None, "learning": True, "window_end": 5_000_000_000, "top": [],
                       "problem": None}, 9_000_000_000)  # fmt: skip
    waiting = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)
    assert learning["Score"].StatusCode == waiting
    assert learning["Threshold"].StatusCode == waiting
    assert learning["Learning"].Value == ua.Variant(True, ua.VariantType.Boolean)
    assert learning["Active"].StatusCode == ua.StatusCode(ua.StatusCodes.Good)
    assert learning["Since"].Value == ua.Variant(NULL_DATETIME, ua.VariantType.DateTime)
    assert to_ns(learning["Score"].SourceTimestamp) == 5_000_000_000, "the end of the window judged"
    idle = values({"active": False, "since": None, "detector": "onnx", "model": "pump-ae@2", "score": None,
                   "threshold": None, "learning": False, "window_end": None, "top": [],
                   "problem": "model pump-ae refused: sha256 mismatch"}, 9_000_000_000)  # fmt: skip
    assert idle["Problem"].Value == ua.Variant("model pump-ae refused: sha256 mismatch", ua.VariantType.String)
    assert idle["Model"].Value == ua.Variant("pump-ae@2", ua.VariantType.String)
    assert to_ns(idle["Problem"].SourceTimestamp) == 9_000_000_000, "no window yet: the time it was shown"


def test_the_explanation_names_the_top_features_largest_share_first() -> None:
    top = [{"feature": "flow.mean", "share": 0.62, "value": 12.1, "expected": 20.3},
           {"feature": "current.mean", "share": 0.21, "value": 3.4, "expected": 4.0}]  # fmt: skip
    assert explanation(top) == "flow.mean 62% (12.1, expected 20.3); current.mean 21% (3.4, expected 4)"
