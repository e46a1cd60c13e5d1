"""Per-requester and per-hospital token buckets in front of every route (429 + Retry-After).

Keys are derived from the credential (hashed) or, for anonymous calls, the client address;
API-token calls also draw from the hospital's shared bucket. Health and docs are exempt.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from node.throttle import ThrottleAPI

_EXEMPT = ("/health", "/docs", "/openapi.json", "/redoc")


def _requester_key(request: Request) -> str:
    auth = request.headers.get("authorization")
    if auth:
        return "req:" + hashlib.sha256(auth.encode()).hexdigest()[:24]
    host = request.client.host if request.client else "unknown"
    return f"ip:{host}"


def install_throttling(
    app: FastAPI, *, requester: ThrottleAPI, hospital: ThrottleAPI, hospital_address: str
) -> None:
    @app.middleware("http")
    async def throttle(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path.startswith(_EXEMPT):
            return await call_next(request)
        checks = [(requester, _requester_key(request))]
        if request.headers.get("authorization", "").startswith("Bearer emr_"):
            checks.append((hospital, f"hospital:{hospital_address}"))
        for bucket, key in checks:
            decision = await run_in_threadpool(bucket.acquire, key)
            if not decision.allowed:
                retry = max(1, math.ceil(decision.retry_after))
                scope = "this hospital" if key.startswith("hospital:") else "this caller"
                return JSONResponse(
                    {
                        "error": "rate_limited",
                        "detail": f"too many requests from {scope}; retry in {retry} s",
                    },
                    status_code=429,
                    headers={"Retry-After": str(retry)},
                )
        return await call_next(request)
