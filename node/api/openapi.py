"""The OpenAPI document made precise, in one place: one error body for every 4xx/5xx
answer, and for each route every status it can answer, derived from what the route depends on.

Routers document what only they know (a 409 for a used nonce, a 410 for an erased record,
route-specific descriptions); this module adds what follows from the route's shape:

- every route: 400 (a malformed field, or a Host header this node does not serve), 429 (the
  throttle) and 503 (a backend or the chain is unreachable);
- a route resolving the caller (``deps.get_principal``): 401 and 403;
- a route with parameters or a body: 422 (FastAPI's validation, in the node's error shape);
- a route with path parameters: 404;
- a route with a request body: 408 (too slow) and 413 (too large).

It also says what FastAPI's generator leaves out or bends: an optional query, path or form
field is omitted, never null; an empty optional form field counts as omitted; integer bounds
are served as the exact integers they are (FastAPI's models turn them into floats).

The test that holds the API to this document is tests/node/api/test_schemathesis.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from copy import deepcopy
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

from node.api.deps import get_principal
from node.fhir.common import FHIR_JSON, OPERATION_OUTCOME_SCHEMA  # issue 12

ERROR_SCHEMA_NAME = "Error"
_ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
# issue 12: the body of every 4xx/5xx answer under /fhir (node/fhir/common.py).
OUTCOME_SCHEMA_NAME = "OperationOutcome"
_OUTCOME_REF = {"$ref": f"#/components/schemas/{OUTCOME_SCHEMA_NAME}"}


class ErrorOut(BaseModel):
    """The body of every 4xx and 5xx answer (node/api/errors.py)."""

    error: str = Field(
        description="machine-readable code, e.g. invalid_request, unauthenticated, forbidden, "
        "not_found, validation_failed, rate_limited, chain_unavailable",
        examples=["invalid_request"],
    )
    detail: str = Field(
        description="why, for people: the field at fault and the rule it broke; never PHI, "
        "keys or tokens",
        examples=["patient: not an Ethereum address (0x followed by 40 hex digits)"],
    )
    request_id: str | None = Field(
        None,
        description="the request's id (also in the X-Request-ID response header): quote it "
        "to the operator, who finds the request's log lines by it",
        examples=["6f1c2b0e9d8a4c3b8e7f6a5d4c3b2a10"],
    )


# The default description of each status the node's error handlers, middleware and
# validation can answer; a router's own description for a route wins.
DEFAULT_DESCRIPTIONS: dict[int, str] = {
    400: "invalid request: a malformed field (named in `detail`), a call the contracts "
    "refused, or a Host header this node does not serve",
    401: "no credential, or an unknown, expired or revoked API token or wallet session",
    403: "the credential's role or wallet may not do this",
    404: "not found",
    408: "the request body arrived too slowly",
    409: "conflicts with the current state",
    410: "gone: the record was erased",
    413: "the request body exceeds the node's limit",
    422: "the request does not match this schema: `detail` names each field at fault",
    429: "too many requests from this caller: retry after `Retry-After` seconds",
    503: "a backend (chain, storage, cache) is unreachable: retry later",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "the scheme to authenticate with: Bearer",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds to wait before the next attempt",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    return {d.call for d in _dependants(dependant) if d.call is not None}


def statuses(dependant: Dependant) -> set[int]:
    """The error statuses a route with ``dependant`` can answer by its shape (see the module
    docstring)."""
    found = {400, 429, 503}
    flat = list(_dependants(dependant))
    if get_principal in _calls(dependant):
        found |= {401, 403}
    params = any(d.path_params or d.query_params or d.header_params for d in flat)
    body = any(d.body_params for d in flat)
    if params or body or any(d.cookie_params for d in flat):
        found.add(422)
    if any(d.path_params for d in flat):
        found.add(404)
    if body:
        found |= {408, 413}
    return found


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _exact_integer_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model types bounds as floats, so ``lt=2**256`` is served as
    1.157920892373162e+77 and a client generating "just below" it overshoots. Every bound the
    node declares is a power of two or below 2**53, so the float holds it exactly: serve it as
    the integer it is."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = int(value)
        for value in node.values():
            _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)


def _without_null(schema: dict[str, Any]) -> None:
    """``T | None`` as ``T``: an optional query, path or form field is left out, never sent
    as null (a client would have to spell null as the text \"null\", which is refused)."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return
    del schema["anyOf"]
    if len(kept) == 1:
        for key, value in kept[0].items():
            schema.setdefault(key, value)
    else:
        schema["anyOf"] = kept


_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def _empty_allowed(field: dict[str, Any]) -> None:
    """FastAPI reads an empty optional form field as left out: document it."""
    pattern = field.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$"):
        field["pattern"] = f"^(?:{pattern[1:-1]})?$"
    field.pop("minLength", None)


def _fields_without_null(schema: dict[str, Any], operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        _without_null(parameter.get("schema", {}))
    content = operation.get("requestBody", {}).get("content", {})
    for media_type in _FORMS:
        ref = content.get(media_type, {}).get("schema", {}).get("$ref", "")
        form = schema["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
        required = set(form.get("required", []))
        for name, field in form.get("properties", {}).items():
            _without_null(field)
            if name not in required and field.get("type") == "string":
                _empty_allowed(field)


def _operations(schema: dict[str, Any], route: Any) -> Iterator[dict[str, Any]]:
    path = schema.get("paths", {}).get(route.path_format, {})
    for method in route.methods or ():
        operation = path.get(method.lower())
        if operation is not None:
            yield operation


def _precise(schema: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _exact_integer_bounds(components)
    _exact_integer_bounds(schema.get("paths", {}))  # request bodies given inline
    components[ERROR_SCHEMA_NAME] = ErrorOut.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components[OUTCOME_SCHEMA_NAME] = OPERATION_OUTCOME_SCHEMA  # issue 12
    # Routers are included as FastAPI's _IncludedRouter: walk their effective routes.
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for operation in _operations(schema, route):
            _fields_without_null(schema, operation)
            responses = operation.setdefault("responses", {})
            for status in statuses(route.dependant):
                responses.setdefault(str(status), {})
            for code, response in responses.items():
                if not code.isdigit() or int(code) < 400:
                    continue
                status = int(code)
                description = response.get("description")
                if not description or description == "Validation Error":
                    description = DEFAULT_DESCRIPTIONS.get(status, "error")
                response["description"] = description
                if route.path_format.startswith("/fhir"):  # issue 12: FHIR answers these
                    response["content"] = {FHIR_JSON: {"schema": dict(_OUTCOME_REF)}}
                else:
                    response["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
                if status in _HEADERS:
                    response["headers"] = deepcopy(_HEADERS[status])
    # FastAPI's own validation body is answered in the node's shape (errors.py): drop it.
    if "HTTPValidationError" in components and "HTTPValidationError" not in str(schema["paths"]):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the precise document at /openapi.json (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _precise(generate(), list(app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
