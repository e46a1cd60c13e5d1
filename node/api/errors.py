"""The only module that knows HTTP status codes for the node's errors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Match

from hsm.exceptions import HSMError
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted
from node.exceptions import (
    Conflict,
    ConsentDenied,
    Erased,
    Forbidden,
    InvalidRequest,
    LimitExceeded,
    NodeError,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from node.observability.logging import REQUEST_ID_HEADER, current_request_id, new_request_id
from storage.exceptions import (
    BackendUnavailable,
    DuplicateIdentifier,
    IntegrityError,
    RecordNotFound,
    StorageError,
)
from zk.exceptions import InputError, ProofInvalid, ZKError

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[Exception], int, str]] = [
    (PayloadTooLarge, 413, "payload_too_large"),
    (InvalidRequest, 400, "invalid_request"),
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (ConsentDenied, 403, "consent_denied"),
    (NotFound, 404, "not_found"),
    (RecordNotFound, 404, "not_found"),
    (Erased, 410, "erased"),
    (Conflict, 409, "conflict"),
    (DuplicateIdentifier, 409, "conflict"),
    (LimitExceeded, 429, "limit_exceeded"),
    (ProofInvalid, 422, "proof_invalid"),
    (InputError, 400, "invalid_request"),
    (ContractReverted, 400, "rejected_by_contract"),
    (BackendUnavailable, 503, "backend_unavailable"),
    (ChainUnavailable, 503, "chain_unavailable"),
    (IntegrityError, 500, "integrity_check_failed"),
]


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def validation_detail(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line: each field's location and the rule it broke."""
    parts = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _child = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(route.methods or ())
    return ", ".join(sorted(methods))


def _respond(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    # issue 14: every error body carries the request's id (also in the X-Request-ID header).
    body = {"error": code, "detail": detail}
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def known(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, code in _STATUS:
            if isinstance(exc, cls):
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
                    headers = {"Retry-After": str(exc.retry_after)}
                if status >= 500:
                    log.error("%s on %s %s: %s", code, request.method, request.url.path, exc)
                return _respond(status, code, str(exc), headers)
        return await unexpected(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # This handler runs outside the request middleware: it echoes the id itself.
        request_id = current_request_id() or new_request_id(None)
        log.error("request %s failed", request_id, exc_info=exc)
        return _respond(
            500,
            "internal_error",
            f"internal error (request id {request_id})",
            {REQUEST_ID_HEADER: request_id},
        )

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's validation, in the node's shape; the input values are not echoed (PHI).
        assert isinstance(exc, RequestValidationError)
        return _respond(422, "validation_failed", validation_detail(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        # Routing answers (unknown path 404, wrong method 405 with Allow), in the node's shape.
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return _respond(exc.status_code, code, str(exc.detail), headers or None)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    for cls in (NodeError, StorageError, ChainError, HSMError, ZKError):
        app.add_exception_handler(cls, known)
    app.add_exception_handler(Exception, unexpected)
