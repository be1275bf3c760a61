"""Property-based fuzzing of every operation in the served OpenAPI document (schemathesis): no input an
admin can send makes the server answer 5xx."""

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

from avila_edge.web.app import OPENAPI_PATH

from .site import admin_token, bearer, running

EXAMPLES = 25
SKIP = {("GET", "/api/live")}  # a stream that does not end: tested in test_api.py
KNOWN = {"asset": "pump1", "name": "setpoint", "point": "pump1/flow", "alarm": "high_flow", "seq": 1}


def with_examples(document: dict[str, Any]) -> dict[str, Any]:
    """Path parameters get this site's ids as examples, so the explicit phase reaches real objects."""
    for methods in document["paths"].values():
        for op in methods.values():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in KNOWN:
                    param["example"] = KNOWN[param["name"]]
    return document


SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
)


def fuzz_one(operation: Any, base: str, headers: dict[str, str], seen: Counter[tuple[str, int]]) -> None:
    @SETTINGS
    @hypothesis.given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=base, headers=headers, timeout=10)
        seen[(operation.label, response.status_code)] += 1
        case.validate_response(response, checks=[not_a_server_error])

    run()


def fuzz(document: dict[str, Any], base: str, headers: dict[str, str]) -> Counter[tuple[str, int]]:
    """Run every operation with ``EXAMPLES`` generated requests; raise on the first 5xx."""
    seen: Counter[tuple[str, int]] = Counter()
    schema = schemathesis.openapi.from_dict(with_examples(document))
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIP:
            fuzz_one(operation, base, headers, seen)
    return seen


async def test_fuzzing_every_operation_of_the_openapi_document_finds_no_server_error(tmp_path: Path) -> None:
    async with running(tmp_path) as gateway:
        token = await admin_token(gateway, "fuzz")
        await gateway.journal.flush()
        assert gateway.audit is not None
        await gateway.audit.checkpoint()
        async with aiohttp.ClientSession() as http, http.get(gateway.http_url + OPENAPI_PATH) as r:
            document = await r.json()
        seen = await asyncio.to_thread(fuzz, document, gateway.http_url, bearer(token))
    operations = {label for label, _ in seen}
    assert len(operations) >= 30
    assert sum(seen.values()) >= len(operations) * 5
    assert not [k for k in seen if k[1] >= 500]
