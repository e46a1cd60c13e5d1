"""The only module that knows HTTP status codes for the node's errors."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hsm.exceptions import HSMError
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted
from node.exceptions import (
    Conflict,
    ConsentDenied,
    Erased,
    Forbidden,
    InvalidRequest,
    NodeError,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from storage.exceptions import BackendUnavailable, IntegrityError, RecordNotFound, StorageError
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
    (ProofInvalid, 422, "proof_invalid"),
    (InputError, 400, "invalid_request"),
    (ContractReverted, 400, "rejected_by_contract"),
    (BackendUnavailable, 503, "backend_unavailable"),
    (ChainUnavailable, 503, "chain_unavailable"),
    (IntegrityError, 500, "integrity_check_failed"),
]


def _respond(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def known(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, code in _STATUS:
            if isinstance(exc, cls):
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                if status >= 500:
                    log.error("%s on %s %s: %s", code, request.method, request.url.path, exc)
                return _respond(status, code, str(exc), headers)
        return await unexpected(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex
        log.error("request %s failed", request_id, exc_info=exc)
        return _respond(500, "internal_error", f"internal error (request id {request_id})")

    for cls in (NodeError, StorageError, ChainError, HSMError, ZKError):
        app.add_exception_handler(cls, known)
    app.add_exception_handler(Exception, unexpected)
