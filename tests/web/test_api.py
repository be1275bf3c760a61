"""The data routes over real HTTP against an in-process gateway, read with an admin API token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from avila_edge.core import Event
from avila_edge.runtime.gateway import Gateway
from avila_edge.web import live
from avila_edge.web.app import OPENAPI_PATH, operations

from .site import admin_token, bearer, running


class Api:
    def __init__(self, http: aiohttp.ClientSession, gateway: Gateway) -> None:
        self.http = http
        self.gateway = gateway

    async def get(self, path: str, status: int = 200) -> Any:
        async with self.http.get(self.gateway.http_url + path) as r:
            assert r.status == status, await r.text()
            return await r.json()

    async def send(self, method: str, path: str, body: Any, status: int) -> Any:
        url = self.gateway.http_url + path
        sent: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
        async with self.http.request(method, url, **sent) as r:
            assert r.status == status, await r.text()
            return await r.json()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running(tmp_path) as gateway:
        token = await admin_token(gateway)
        async with aiohttp.ClientSession(headers=bearer(token)) as http:
            yield Api(http, gateway)


async def readings_at_least(api: Api, n: int) -> None:
    async with asyncio.timeout(10):
        while api.gateway.pipeline.counters.accepted < n:
            await asyncio.sleep(0.02)


async def test_site_twins_points_drivers_and_sync_describe_the_running_gateway(api: Api) -> None:
    await readings_at_least(api, 4)
    site = await api.get("/api/site")
    assert site == {
        "site": {"id": "api", "name": "API test site"},
        "assets": [
            {"id": "pump1", "name": "Pump 1", "type": "pump", "parent": None,
             "points": ["pump1/flow", "pump1/setpoint"], "writable": ["setpoint"]},
        ],
    }  # fmt: skip
    (twin,) = (await api.get("/api/twins"))["assets"]
    assert twin["asset"] == "pump1"
    assert set(twin) >= {"reported", "desired", "derived", "alarms", "maintenance", "anomaly"}
    assert (await api.get("/api/twins/nope", 404))["error"].startswith("no asset 'nope'")
    points = {p["id"]: p for p in (await api.get("/api/points"))["points"]}
    assert points["pump1/flow"]["quality"] == "good"
    assert points["pump1/flow"]["unit"] == "m3/h"
    (driver,) = (await api.get("/api/drivers"))["drivers"]
    assert (driver["device"], driver["connected"], driver["restarts"]) == ("dev1", True, 0)
    sync = await api.get("/api/sync")
    assert set(sync) == {"journal", "cursors", "uplinks", "sinks"}
    assert sync["journal"]["next_seq"] > 0
    config = await api.get("/api/config")
    assert "pump1/flow" in config["yaml"]


async def test_history_returns_raw_readings_and_buckets_for_an_url_encoded_point(api: Api) -> None:
    await readings_at_least(api, 12)
    await api.gateway.journal.flush()
    raw = await api.get("/api/points/pump1%2Fflow/history?limit=5")
    assert raw["point"] == "pump1/flow"
    values = [r["value"] for r in raw["readings"]]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
    first, last = raw["readings"][0]["ts_gateway"], raw["readings"][-1]["ts_gateway"]
    ranged = await api.get(f"/api/points/pump1%2Fflow/history?from={first}&to={last}")
    assert [r["value"] for r in ranged["readings"]] == [0.0, 1.0, 2.0, 3.0]  # `to` is exclusive
    iso = await api.get("/api/points/pump1%2Fflow/history?from=2000-01-01T00:00:00Z&limit=1")
    assert iso["readings"][0]["value"] == 0.0
    buckets = await api.get("/api/points/pump1%2Fflow/history?from=2000-01-01T00:00:00Z&buckets=1")
    (bucket,) = [b for b in buckets["buckets"] if b["count"]]
    assert bucket["min"] == 0.0
    assert bucket["count"] >= 6  # two points: 12 readings hold 6 of pump1/flow
    assert set(bucket) == {"start_ns", "count", "min", "max", "mean"}
    assert (await api.get("/api/points/pump1%2Fnope/history", 404))["error"]
    assert "ISO-8601" in (await api.get("/api/points/pump1%2Fflow/history?from=yesterday", 400))["error"]


async def test_desired_values_and_acknowledgements_are_journaled_as_events(api: Api) -> None:
    async with asyncio.timeout(10):
        while not any(a["active"] for a in (await api.get("/api/alarms"))["alarms"]):
            await asyncio.sleep(0.05)  # the count passes the limit of 2
    (alarm,) = (await api.get("/api/alarms"))["alarms"]
    assert alarm["id"] == "high_flow"
    assert (alarm["state"], alarm["severity"], alarm["acked"]) == ("active", "critical", False)
    assert alarm["since_ns"] > 0
    await api.send("POST", "/api/alarms/pump1/high_flow/ack", None, 200)
    await api.send("POST", "/api/alarms/pump1/high_flow/ack", None, 409)
    await api.send("POST", "/api/alarms/pump1/nope/ack", None, 404)
    assert (await api.send("PUT", "/api/twins/pump1/desired/setpoint", {"value": 7.5}, 202))["version"] == 1
    await api.send("PUT", "/api/twins/pump1/desired/setpoint", {"value": 7.5, "extra": 1}, 400)
    await api.gateway.journal.flush()
    events = await api.get("/api/events?limit=1000")
    kinds = [(e["kind"], e["attrs"].get("transition") or e["attrs"].get("status")) for e in events["events"]]
    assert ("alarm", "raised") in kinds
    assert ("alarm", "acknowledged") in kinds
    ack = next(e for e in events["events"] if e["attrs"].get("transition") == "acknowledged")
    assert ack["attrs"]["by"] == "token:tests"
    assert any(k == "desired" for k, _ in kinds)
    assert events["next"] >= events["events"][-1]["seq"]
    only = await api.get(f"/api/events?kind=alarm&after={ack['seq'] - 1}&limit=1")
    assert [e["seq"] for e in only["events"]] == [ack["seq"]]
    later = await api.get(f"/api/events?after={events['next']}")
    assert all(e["seq"] > events["next"] for e in later["events"])
    assert (await api.get("/api/anomalies"))["events"] == []


async def test_an_anomaly_is_acknowledged_once_by_an_operator_and_shown_as_acked(api: Api) -> None:
    g = api.gateway
    await g.pipeline.record([
        Event(kind="anomaly", source="pump1/flow_z", ts=g.clock.now_ns(), attrs={"score": 4.2, "active": True}),
        Event(kind="alarm", source="pump1/high_flow", ts=g.clock.now_ns(), attrs={"transition": "raised"}),
    ])  # fmt: skip
    (anomaly,) = (await api.get("/api/anomalies"))["events"]
    assert (anomaly["source"], anomaly["acked"], anomaly["acked_by"]) == ("pump1/flow_z", False, None)
    seq = anomaly["seq"]
    viewer = (await api.send("POST", "/api/tokens", {"name": "screen", "role": "viewer"}, 201))["token"]
    async with aiohttp.ClientSession(headers=bearer(viewer)) as http:
        async with http.post(f"{g.http_url}/api/anomalies/{seq}/ack") as r:
            assert r.status == 403
    acked = await api.send("POST", f"/api/anomalies/{seq}/ack", None, 200)
    assert acked == {"seq": seq, "source": "pump1/flow_z", "by": "token:tests"}
    assert (
        "already acknowledged by token:tests"
        in (await api.send("POST", f"/api/anomalies/{seq}/ack", None, 409))["error"]
    )
    assert (await api.send("POST", f"/api/anomalies/{seq + 1}/ack", None, 404))["error"].endswith(
        "not an anomaly event"
    )
    await api.send("POST", "/api/anomalies/99999999/ack", None, 404)
    await api.send("POST", "/api/anomalies/x/ack", None, 404)
    (shown,) = (await api.get("/api/anomalies"))["events"]
    assert (shown["acked"], shown["acked_by"]) == (True, "token:tests")
    (ack,) = (await api.get("/api/events?kind=anomaly_ack"))["events"]
    assert ack["attrs"] == {"seq": seq, "by": "token:tests"}
    assert ack["source"] == "pump1/flow_z"


async def test_live_stream_delivers_a_twin_change_and_journal_events(api: Api) -> None:
    async with api.http.get(api.gateway.http_url + "/api/live") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        seen: dict[str, Any] = {}
        async with asyncio.timeout(10):
            while not {"twin", "event"} <= set(seen):
                line = (await r.content.readline()).decode().strip()
                if line.startswith("event: "):
                    kind = line[7:]
                    data = (await r.content.readline()).decode()
                    assert data.startswith("data: ")
                    seen[kind] = json.loads(data[6:])
                    if kind == "twin" and "event" not in seen:
                        await api.send("PUT", "/api/twins/pump1/desired/setpoint", {"value": 1}, 202)
    assert seen["twin"]["asset"] == "pump1"
    assert seen["event"]["kind"] in ("alarm", "desired")


async def test_an_audit_proof_verifies_and_a_tampered_one_does_not(api: Api) -> None:
    await readings_at_least(api, 3)
    await api.gateway.journal.flush()
    assert api.gateway.audit is not None
    await api.gateway.audit.checkpoint()
    await api.gateway.journal.flush()
    cp = await api.get("/api/audit/checkpoint")
    assert cp["tree_size"] > 1
    assert cp["note"].startswith(cp["origin"] + "\n")
    assert cp["public_key"].startswith(cp["origin"] + "+")
    proof = await api.get("/api/audit/proof/1")
    assert proof["verified"] is True
    assert json.loads(bytes.fromhex(proof["leaf"]))["seq"] == 1
    verdict = await api.send("POST", "/api/audit/verify", proof, 200)
    assert verdict["ok"] is True, verdict
    entry = json.loads(bytes.fromhex(proof["leaf"]))
    forged = json.dumps({**entry, "value": 99.0}, sort_keys=True, separators=(",", ":")).encode().hex()
    verdict = await api.send("POST", "/api/audit/verify", {**proof, "leaf": forged}, 200)
    assert (verdict["ok"], "altered" in verdict["reason"]) == (False, True)
    bent = [("0" * 64), *proof["path"][1:]]
    verdict = await api.send("POST", "/api/audit/verify", {**proof, "path": bent}, 200)
    assert (verdict["ok"], "root hash" in verdict["reason"]) == (False, True)
    lines = proof["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)  # a bigger tree than was signed
    verdict = await api.send("POST", "/api/audit/verify", {**proof, "checkpoint": "\n".join(lines)}, 200)
    assert verdict["ok"] is False
    assert "signature" in verdict["reason"]
    async with api.http.get(api.gateway.http_url + "/api/audit/proof/1?download=1") as r:
        assert r.headers["Content-Disposition"] == 'attachment; filename="avila-proof-1.json"'
    await api.get(f"/api/audit/proof/{10**9}", 404)


async def test_config_validation_returns_line_precise_issues(api: Api) -> None:
    good = (await api.get("/api/config"))["yaml"]
    assert await api.send("POST", "/api/config/validate", "site: {id: ok}\n", 200) == {"ok": True}
    bad = "site: {id: ok}\njournal:\n  max_bytes: lots\n"
    reply = await api.send("POST", "/api/config/validate", bad, 422)
    (issue,) = reply["issues"]
    assert (issue["file"], issue["line"], issue["path"]) == ("config.yaml", 3, "journal.max_bytes")
    assert issue["message"]
    assert good


async def test_the_openapi_document_describes_every_route(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway, aiohttp.ClientSession() as http:
        async with http.get(gateway.http_url + OPENAPI_PATH) as r:
            doc = await r.json()
        async with http.get(gateway.http_url + "/") as r:
            assert r.status == 200
            assert "text/html" in r.headers["Content-Type"]
    assert doc["openapi"].startswith("3.1")
    for op in operations():
        entry = doc["paths"][op.path][op.method.lower()]
        assert entry["summary"]
        assert str(op.status) in entry["responses"]
    schemas = doc["components"]["schemas"]
    assert {"DesiredRequest", "Proof", "Events", "Error"} <= set(schemas)


async def test_unknown_api_routes_answer_json_errors(api: Api) -> None:
    assert (await api.get("/api/nothing-here", 404))["error"].startswith("Not Found")
    assert (await api.send("DELETE", "/api/site", None, 405))["error"].startswith("Method Not Allowed")


async def test_a_live_stream_gets_pings_and_ends_when_the_gateway_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "PING", 0.1)
    async with running(tmp_path) as gateway:
        token = await admin_token(gateway)
        http = aiohttp.ClientSession(headers=bearer(token))
        try:
            stream = await http.get(gateway.http_url + "/api/live")
            async with asyncio.timeout(5):
                while (await stream.content.readline()).strip() != b": ping":
                    pass
            stopping = time.monotonic()
        except BaseException:
            await http.close()
            raise
    try:
        assert time.monotonic() - stopping < 3  # the open stream does not hold the shutdown up
        async with asyncio.timeout(5):
            await stream.content.read()  # the server ended the stream
        assert stream.content.at_eof()
    finally:
        stream.release()
        await http.close()
