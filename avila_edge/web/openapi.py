"""The OpenAPI 3.1 document, generated from the route table and the msgspec types of bodies and replies."""

from __future__ import annotations

from typing import Any

import msgspec

import avila_edge
from avila_edge.web.routing import Operation

_ROLE_TEXT = {
    "open": "No authentication.",
    "loopback": "Open while the server listens on loopback only; otherwise any logged-in role.",
    "viewer": "Role viewer or above.",
    "operator": "Role operator or above.",
    "admin": "Role admin.",
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "issues": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "file": {"type": "string"},
                    "line": {"type": ["integer", "null"]},
                    "path": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def document(operations: list[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    types = sorted({t for op in operations for t in (op.body, op.response) if t is not None and t != "text"}, key=repr)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, by_type)
    components["Error"] = ERROR
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "avila-edge gateway API",
            "version": avila_edge.__version__,
            "description": "The local REST API of one gateway; see docs/api.md for the auth model.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (POST /api/tokens)"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "avila_session",
                    "description": "console login; writes also need the X-CSRF-Token header",
                },
            },
        },
    }


def _operation(op: Operation, schemas: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}{op.path.replace('/', '_').replace('{', '').replace('}', '')}",
        "summary": op.summary,
        "description": _ROLE_TEXT[op.access],
        "tags": [op.tag],
    }
    if op.access != "open":
        out["security"] = [{"bearer": []}, {"session": []}]
    if op.params:
        out["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.where == "path" or p.required, "schema": dict(p.schema),
             **({"description": p.description} if p.description else {})}
            for p in op.params
        ]  # fmt: skip
    if op.body == "text":
        out["requestBody"] = {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}
    elif op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schemas[op.body]}}}
    success: dict[str, Any] = {"description": "success"}
    if op.response is not None:
        success["content"] = {op.content: {"schema": schemas[op.response]}}
    elif op.status != 204:
        success["content"] = {op.content: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): success}
    errors = dict(op.errors)
    if op.params or op.body is not None:
        errors.setdefault(400, "a parameter or the body is malformed or out of range")
    if op.body is not None and op.body != "text":
        errors.setdefault(415, "the body is not sent as application/json")
    if op.access != "open":
        errors.setdefault(401, "not logged in")
        if op.access != "loopback":
            errors.setdefault(403, "role too low, or CSRF token missing or wrong")
    for status, text in sorted(errors.items()):
        ref = {"$ref": "#/components/schemas/Error"}
        responses[str(status)] = {"description": text, "content": {"application/json": {"schema": ref}}}
    out["responses"] = responses
    return out
