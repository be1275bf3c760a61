"""Server mode: SenML packs POSTed by libcoap's coap-client-notls (an independent client) and by the
hil poster become readings; malformed packs are answered, counted, logged and survived."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import cbor2
import pytest

from avila_edge.config.model import DeviceConfig
from avila_edge.core import DeviceRejected, Quality
from hil.coap_nodes import SENML_CBOR, SENML_JSON, SenmlPoster

from ..harness import wait_connected
from .conftest import coap_client, point, running, server_device

BT = 1_700_000_000


def ingest(port: int, **conn: object) -> DeviceConfig:
    return server_device(
        port,
        [
            point("pump1/flow", name="urn:dev:pump1:flow"),
            point("pump1/running", "bool", name="urn:dev:pump1:running"),
            point("pump1/temperature"),
            point("pump1/state", "string"),
        ],
        names={"urn:dev:pump1:motor_temperature": "pump1/temperature", "urn:dev:pump1:state": "pump1/state"},
        **conn,
    )


async def post(port: int, payload: str, *, cf: int = SENML_JSON, path: str = "senml") -> str:
    """POST with coap-client-notls; returns the error code it printed ('' for a 2.xx answer)."""
    code, _, err = await coap_client("-m", "post", "-t", str(cf), "-e", payload, f"coap://127.0.0.1:{port}/{path}")
    assert code == 0, err
    return err.strip().split(" ")[0] if err.strip() else ""


async def test_a_senml_json_pack_from_coap_client_becomes_readings_with_resolved_names_and_times(
    udp_port: int,
) -> None:
    pack = [
        {"bn": "urn:dev:pump1:", "bt": BT, "n": "flow", "u": "m3/h", "v": 118.5},
        {"n": "motor_temperature", "u": "Cel", "v": 47.25, "t": 2},
        {"n": "running", "vb": True},
        {"n": "state", "vs": "auto"},
    ]
    async with running(ingest(udp_port)) as (driver, sink):
        assert await post(udp_port, json.dumps(pack)) == ""
        flow = await sink.wait_value("pump1/flow", 118.5)
        temp = await sink.wait_value("pump1/temperature", 47.25)
        await sink.wait_value("pump1/running", True)
        await sink.wait_value("pump1/state", "auto")
    assert flow.ts_source == BT * 10**9
    assert temp.ts_source == (BT + 2) * 10**9
    assert driver.health().errors == {}
    assert driver.health().requests == 1


async def test_a_senml_cbor_pack_from_a_file_becomes_readings(udp_port: int, tmp_path: Path) -> None:
    # RFC 8428 CBOR labels: bn -2, bt -3, n 0, v 2, vb 4, t 6
    pack = cbor2.dumps([{-2: "urn:dev:pump1:", -3: BT, 0: "flow", 2: 99.0}, {0: "running", 4: False, 6: 1.5}])
    file = tmp_path / "pack.cbor"
    file.write_bytes(pack)
    async with running(ingest(udp_port)) as (_, sink):
        code, _, err = await coap_client(
            "-m", "post", "-t", str(SENML_CBOR), "-f", str(file), f"coap://127.0.0.1:{udp_port}/senml"
        )
        assert (code, err) == (0, "")
        await sink.wait_value("pump1/flow", 99.0)
        running_ = await sink.wait_value("pump1/running", False)
    assert running_.ts_source == BT * 10**9 + 1_500_000_000


async def test_relative_times_count_from_the_gateway_clock(udp_port: int) -> None:
    async with running(ingest(udp_port)) as (_, sink):
        assert await post(udp_port, '[{"bn":"urn:dev:pump1:","n":"flow","v":1,"t":-10}]') == ""
        r = await sink.wait_value("pump1/flow", 1)
    assert r.ts_gateway - r.ts_source == 10 * 10**9


MALFORMED = [
    ("truncated CBOR", cbor2.dumps([{0: "urn:dev:pump1:flow", 2: 1.0}])[:-3], SENML_CBOR, "invalid_cbor"),
    (
        "CBOR with trailing bytes",
        cbor2.dumps([{0: "urn:dev:pump1:flow", 2: 1.0}]) + b"\x00",
        SENML_CBOR,
        "invalid_cbor",
    ),
    ("invalid UTF-8", b'[{"n":"urn:dev:pump1:flow","v":1,"vs":"\xff\xfe"}]', SENML_JSON, "invalid_utf8"),
    ("invalid JSON", b'[{"n":"urn:dev:pump1:flow","v":1', SENML_JSON, "invalid_json"),
    ("a text value", b'[{"n":"urn:dev:pump1:flow","v":"fast"}]', SENML_JSON, "wrong_type"),
    ("a text name", b'[{"n":17,"v":1}]', SENML_JSON, "wrong_type"),
    ("a CBOR text value", cbor2.dumps([{0: "urn:dev:pump1:flow", 2: "x"}]), SENML_CBOR, "wrong_type"),
    ("a non-SenML object", b'{"flow": 1.0}', SENML_JSON, "not_senml"),
    ("a list of numbers", b"[1, 2, 3]", SENML_JSON, "not_senml"),
    ("a bad name", b'[{"n":"-flow","v":1}]', SENML_JSON, "bad_name"),
    ("a must-understand field", b'[{"n":"urn:dev:pump1:flow","v":1,"x_":1}]', SENML_JSON, "not_senml"),
    ("a later SenML version", b'[{"bver":11,"n":"urn:dev:pump1:flow","v":1}]', SENML_JSON, "unsupported_version"),
    ("a bool for a number point", b'[{"n":"urn:dev:pump1:flow","vb":true}]', SENML_JSON, "wrong_type"),
]


async def test_a_corpus_of_malformed_packs_is_answered_4_00_counted_logged_and_survived(
    udp_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.coap")
    uri = f"coap://127.0.0.1:{udp_port}/senml"
    async with running(ingest(udp_port, max_payload=512)) as (driver, sink):
        for i, (what, payload, cf, _) in enumerate(MALFORMED):
            file = tmp_path / f"pack{i}"
            file.write_bytes(payload)
            code, _, err = await coap_client("-m", "post", "-t", str(cf), "-f", str(file), uri)
            assert (code, err.split(" ")[0].strip()) == (0, "4.00"), what
        async with SenmlPoster(uri) as poster:
            assert await poster.post(b"[" + b" " * 600 + b"]", SENML_JSON) == "4.13"
            assert await poster.post(b'[{"n":"urn:dev:pump1:flow","v":1}]', 0) == "4.15"
        # still accepting packs afterwards
        assert await post(udp_port, '[{"n":"urn:dev:pump1:flow","v":7.5}]') == ""
        await sink.wait_value("pump1/flow", 7.5)
    expected: dict[str, int] = {"oversize": 1, "unsupported_format": 1}
    for *_, kind in MALFORMED:
        expected[kind] = expected.get(kind, 0) + 1
    assert driver.health().errors == expected
    assert "invalid json from 127.0.0.1:" in caplog.text  # the source address
    assert 'payload b\'[{"n":"urn:dev:pump1:flow","v":1\'' in caplog.text  # an excerpt
    bad = [r for r in sink.of("pump1/flow") if r.quality is Quality.BAD]
    assert len(bad) == 1  # the bool record reached its point and was refused there
    assert "expected a number" in bad[0].reason


async def test_an_error_answer_reaches_coap_client_for_a_malformed_pack(udp_port: int) -> None:
    async with running(ingest(udp_port)) as (driver, _):
        assert await post(udp_port, "[{") == "4.00"
        assert await post(udp_port, '[{"n":"x","v":1}]') == "4.04"
        assert await post(udp_port, "[]", path="elsewhere") == "4.04"
    assert driver.health().errors == {"invalid_json": 1, "unknown_name": 1}


async def test_unknown_names_are_counted_and_only_a_pack_with_no_known_name_is_not_found(udp_port: int) -> None:
    mixed = '[{"bn":"urn:dev:pump1:","n":"flow","v":3},{"n":"humidity","v":40},{"n":"co2","v":400}]'
    async with running(ingest(udp_port)) as (driver, sink):
        assert await post(udp_port, mixed) == ""
        await sink.wait_value("pump1/flow", 3)
        assert await post(udp_port, '[{"n":"urn:dev:pump9:flow","v":1}]') == "4.04"
    assert driver.health().errors == {"unknown_name": 3}


async def test_the_hil_poster_sends_the_plant_as_json_and_cbor_packs(udp_port: int) -> None:
    async with running(ingest(udp_port)) as (_, sink), SenmlPoster(f"coap://127.0.0.1:{udp_port}/senml") as poster:
        assert await poster.post_plant(SENML_JSON) == "2.04"
        await sink.wait_for(lambda c: {"pump1/flow", "pump1/temperature", "pump1/running"} <= set(c.latest))
        assert await poster.post_plant(SENML_CBOR) == "2.04"
        await sink.wait_for(lambda c: len(c.of("pump1/flow")) == 2)
    assert all(r.good for r in sink.all)


async def test_a_port_in_use_marks_points_bad_until_it_is_free(udp_port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", udp_port))
    try:
        async with running(ingest(udp_port), connected=False) as (driver, sink):
            bad = await sink.wait_quality("pump1/flow", Quality.BAD)
            assert bad.reason.startswith(f"listen on coap://127.0.0.1:{udp_port}: ")
            transport.close()
            await wait_connected(driver, 5.0)
            assert await post(udp_port, '[{"n":"urn:dev:pump1:flow","v":2}]') == ""
            await sink.wait_value("pump1/flow", 2)
    finally:
        transport.close()


async def test_points_go_bad_when_no_record_reaches_them_for_max_silence(udp_port: int) -> None:
    async with running(ingest(udp_port, max_silence=0.3)) as (_, sink):
        assert await post(udp_port, '[{"n":"urn:dev:pump1:flow","v":5}]') == ""
        await sink.wait_value("pump1/flow", 5)
        bad = await sink.wait_quality("pump1/flow", Quality.BAD)
        assert bad.reason == "no SenML record for 0.3 s"
        assert bad.value == 5
        assert await post(udp_port, '[{"n":"urn:dev:pump1:flow","v":6}]') == ""
        await sink.wait_value("pump1/flow", 6)


async def test_a_blockwise_upload_is_assembled_up_to_max_payload_and_refused_beyond(udp_port: int) -> None:
    records = [{"bn": "urn:dev:pump1:", "n": "flow", "v": 4.25}] + [{"n": f"extra{i}", "v": i} for i in range(12)]
    small = json.dumps(records)
    assert 200 < len(small) < 400
    big = json.dumps(records * 3)
    async with running(ingest(udp_port, max_payload=400)) as (driver, sink):
        code, _, err = await coap_client(
            "-m", "post", "-b", "64", "-t", "110", "-e", small, f"coap://127.0.0.1:{udp_port}/senml"
        )
        assert (code, err) == (0, "")
        await sink.wait_value("pump1/flow", 4.25)
        code, _, err = await coap_client(
            "-m", "post", "-b", "64", "-t", "110", "-e", big, f"coap://127.0.0.1:{udp_port}/senml"
        )
        assert err.startswith("4.13"), err
    assert len(sink.of("pump1/flow")) == 1
    assert driver.health().errors == {"unknown_name": 12, "oversize": 1}


async def test_points_of_the_ingest_cannot_be_written(udp_port: int) -> None:
    async with running(ingest(udp_port)) as (driver, _):
        with pytest.raises(DeviceRejected, match="not writable"):
            await driver.write("pump1/flow", 1.0)
        with pytest.raises(DeviceRejected, match="no such point"):
            await driver.write("pump9/flow", 1.0)
