"""Property-based fuzzing of every operation in the served OpenAPI document (schemathesis): no input an
admin can send makes the server answer 5xx, and every reply is what the document says it is.

Each operation gets ``EXAMPLES`` requests that fit the document (positive), ``EXAMPLES`` that break it
(negative: wrong types, missing fields, bad JSON), and ``EXAMPLES`` with the path parameters fixed to
objects of this site, so the handlers' deeper branches (a desired value accepted, an alarm and an
anomaly acknowledged, a proof served) are reached and not only the 404 of an unknown id.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from avila_edge.core import Event
from avila_edge.journal import EntryKind
from avila_edge.web.app import OPENAPI_PATH

from .site import admin_token, bearer, running

EXAMPLES = 25
SKIP = {("GET", "/api/live")}  # a stream that does not end: tested in test_api.py
KNOWN: dict[str, Any] = {"asset": "pump1", "name": "setpoint", "point": "pump1/flow", "alarm": "high_flow"}
BODIES: dict[tuple[str, str], Any] = {  # with real objects, a body the handler accepts (the rest is generated)
    ("POST", "/api/config/validate"): "site: {id: fuzz}\n",
    ("POST", "/api/replay"): {
        "variant": "site: {id: api}\n",
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-01-01T00:01:00Z",
    },
    ("POST", "/api/audit/verify"): None,  # filled with a real proof
}
# operations that must have answered 2xx at least once, so the fuzzing reached past the lookups
MUST_SUCCEED = {
    "PUT /api/twins/{asset}/desired/{name}",
    "POST /api/alarms/{asset}/{alarm}/ack",
    "POST /api/anomalies/{seq}/ack",
    "GET /api/points/{point}/history",
    "GET /api/twins/{asset}",
    "GET /api/audit/proof/{seq}",
    "POST /api/audit/verify",
    "POST /api/config/validate",
    "POST /api/tokens",
}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
"""No 5xx, and every reply is one the document names, with the content type and body schema it gives."""

SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.generate],
)


def fuzz_one(operation: Any, strategy: Any, base: str, headers: dict[str, str], seen: Counter[tuple[str, int]]) -> None:
    @SETTINGS
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base, headers=headers, timeout=10)
        seen[(operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    run()


def fuzz(
    document: dict[str, Any], base: str, headers: dict[str, str], known: dict[str, Any]
) -> Counter[tuple[str, int]]:
    """Run every operation in the three ways above; raise on the first 5xx."""
    seen: Counter[tuple[str, int]] = Counter()
    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in SKIP:
            continue
        described = document["paths"][operation.path][operation.method]
        names = {p["name"] for p in described.get("parameters", [])}
        breakable = bool(names) or "requestBody" in described  # else there is nothing to send wrong
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[: 2 if breakable else 1]:
            fuzz_one(operation, operation.as_strategy(generation_mode=mode), base, headers, seen)
        fixed = {name: known[name] for name in names if name in known}
        if fixed or key in BODIES:
            extra = {"body": known.get(key, BODIES[key])} if key in BODIES else {}
            strategy = operation.as_strategy(path_parameters=fixed or None, **extra)
            fuzz_one(operation, strategy, base, headers, seen)
    return seen


async def test_fuzzing_every_operation_of_the_openapi_document_finds_no_server_error(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway:
        token = await admin_token(gateway, "fuzz")
        attrs = {"active": True, "score": 5.5, "threshold": 3.0}
        await gateway.pipeline.record(
            [Event(kind="anomaly", source="pump1/flow", ts=gateway.clock.now_ns(), attrs=attrs)]
        )
        await gateway.journal.flush()
        entries = await gateway.journal.read(gateway.journal.first_seq, 100_000, kinds=[EntryKind.EVENT])
        (anomaly,) = [e.seq for e in entries if e.event().kind == "anomaly"]
        assert gateway.audit is not None
        await gateway.audit.checkpoint()
        async with aiohttp.ClientSession(headers=bearer(token)) as http:
            async with http.get(gateway.http_url + OPENAPI_PATH) as r:
                document = await r.json()
            async with http.get(f"{gateway.http_url}/api/audit/proof/0") as r:
                assert r.status == 200, await r.text()
                proof = await r.json()
        known = {**KNOWN, "seq": anomaly, ("POST", "/api/audit/verify"): proof}
        seen = await asyncio.to_thread(fuzz, document, gateway.http_url, bearer(token), known)
    operations = {label for label, _ in seen}
    assert len(operations) >= 30
    assert sum(seen.values()) >= len(operations) * EXAMPLES
    assert not [k for k in seen if k[1] >= 500]
    succeeded = {label for label, status in seen if 200 <= status < 300}
    assert succeeded >= MUST_SUCCEED, sorted(MUST_SUCCEED - succeeded)
    authorised = sum(n for (_, status), n in seen.items() if status not in (401, 403))
    assert authorised >= 0.9 * sum(seen.values())  # the requests reached the handlers, not the login check
