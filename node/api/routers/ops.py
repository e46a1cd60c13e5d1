"""Operating the node (issue 14): Prometheus metrics, liveness and readiness, and the
middleware giving every request an id, a structured log line and its metrics.

Who may call: ``/healthz`` and ``/readyz`` anyone (probes; readiness is computed at most
once a second); ``/metrics`` API tokens with the auditor or admin role, or a scraper
presenting ``metrics.scrape_token`` (``EMR_METRICS__SCRAPE_TOKEN``) as its bearer token.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.api.identity import identify
from node.auth.principal import Role, TokenPrincipal
from node.exceptions import Forbidden, NotFound, Unauthenticated
from node.observability.health import CachedReadiness
from node.observability.logging import (
    REQUEST_ID_HEADER,
    current_request_id,
    new_request_id,
    request_id_var,
)
from node.observability.metrics import NULL_METRICS, MetricsAPI, MetricsExporterAPI, NodeState

if TYPE_CHECKING:
    from node.wiring import Node

router = APIRouter(tags=["operations"])
request_log = logging.getLogger("node.api.request")

# The same scheme as node/api/deps.py's (one "HTTPBearer" in the OpenAPI document); here
# the bearer may also be the configured scrape token.
_scrape_bearer = HTTPBearer(
    auto_error=False, description="API token (emr_...) or wallet session (emrs_...)"
)


class LiveOut(BaseModel):
    status: Literal["alive"] = "alive"


class ComponentOut(BaseModel):
    ok: bool
    error: str | None = Field(None, description="the failure's kind; never a host or secret")


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    components: dict[str, ComponentOut]
    failed: list[str] = Field(description="components that did not answer")


@router.get(
    "/healthz",
    response_model=LiveOut,
    summary="Liveness (anyone): the process serves; touches no dependency",
)
async def healthz() -> LiveOut:
    return LiveOut()


def install_node_probes(app: FastAPI, node: Node) -> None:
    """The cached readiness checks and scrape-time gauges of ``node``, one per app: probes
    and scrapers share them, so they cannot drive the checks faster than their TTLs."""
    app.state.readiness = CachedReadiness(node)
    app.state.node_state = NodeState(node)


def _readiness(request: Request) -> CachedReadiness:
    cached: CachedReadiness = request.app.state.readiness
    return cached


@router.get(
    "/readyz",
    response_model=ReadyOut,
    response_model_exclude_none=True,
    summary="Readiness (anyone): index, cache, chain, blob store, key store and worker answer",
    responses={
        503: {
            "description": "a required component did not answer: the error body, with "
            "`failed` (the components' names) and `components` as in the 200 answer"
        }
    },
)
def readyz(request: Request) -> Any:
    checks = _readiness(request)()
    components = {n: ComponentOut(ok=c.ok, error=c.error) for n, c in checks.items()}
    failed = sorted(n for n, c in checks.items() if not c.ok)
    out = ReadyOut(status="not_ready" if failed else "ready", components=components, failed=failed)
    if failed:  # the node's error body (error, detail, request_id) and the report
        body = {
            "error": "not_ready",
            "detail": "not ready: " + ", ".join(failed),
            "request_id": current_request_id(),
            **out.model_dump(exclude_none=True),
        }
        return JSONResponse(body, status_code=503)
    return out


def _check_scraper(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    node = request.app.state.node
    if not node.settings.metrics.enabled:
        raise NotFound("metrics are disabled on this node (metrics.enabled)")
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <auditor token or scrape token>'")
    scrape = node.settings.metrics.scrape_token
    if scrape is not None and hmac.compare_digest(
        credentials.credentials.encode(), scrape.get_secret_value().encode()
    ):
        return
    caller = identify(node.auth, request.scope)
    if caller is None:
        raise Unauthenticated("unknown, expired or revoked credential")
    if not isinstance(caller, TokenPrincipal) or not caller.has(Role.AUDITOR):
        raise Forbidden("metrics need an API token with role auditor or admin, or the scrape token")


async def scraper(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scrape_bearer)],
) -> None:
    """Admits the scrape token and auditor or admin API tokens (401 / 403 otherwise)."""
    await run_in_threadpool(_check_scraper, request, credentials)


@router.get(
    "/metrics",
    summary="Prometheus metrics (auditor or admin token, or the scrape token)",
    response_class=Response,
    responses={
        200: {
            "description": "the Prometheus text exposition format, version 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        401: {"description": "no credential, or an unknown one"},
        403: {"description": "a credential without the auditor or admin role"},
        404: {"description": "metrics are disabled on this node, or it records none"},
    },
)
async def metrics(request: Request, _scraper: Annotated[None, Depends(scraper)]) -> Response:
    node = request.app.state.node
    exporter = node.metrics
    if not isinstance(exporter, MetricsExporterAPI):
        raise NotFound("this node records no metrics")
    node_state: NodeState = request.app.state.node_state
    body, content_type = await run_in_threadpool(exporter.exposition, node_state)
    return Response(body, media_type=content_type)


class RequestObservability:
    """Outermost middleware: the request id (a safe ``X-Request-ID`` is kept, else a new
    one; echoed in the response), one log line per request and the HTTP metrics, labelled
    by route template (``/records/{record_id}``), never by raw path."""

    def __init__(self, app: ASGIApp, *, metrics: MetricsAPI) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                offered = value.decode("latin-1")
                break
        request_id = new_request_id(offered)
        request_id_var.set(request_id)  # not reset: the 500 handler runs after us
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - start)

    def _record(self, scope: MutableMapping[str, Any], status: int, duration: float) -> None:
        route = _route_template(scope)
        method = scope.get("method", "GET")
        try:
            self._metrics.count(
                "emr_http_requests_total", method=method, route=route, status=str(status)
            )
            self._metrics.observe(
                "emr_http_request_duration_seconds", duration, method=method, route=route
            )
        except Exception:  # metrics never fail a request
            request_log.exception("recording the request's metrics failed")
        request_log.info(
            "request",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration": round(duration, 6),
            },
        )


def _route_template(scope: MutableMapping[str, Any]) -> str:
    """The matched route's path template; ``unmatched`` when no route matched (a raw path
    could carry ids or be made up by anyone)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    return "unmatched"


def install_observability(app: FastAPI, metrics: MetricsAPI | None) -> None:
    """Add ``RequestObservability`` as the outermost middleware (call it last)."""
    app.add_middleware(RequestObservability, metrics=metrics or NULL_METRICS)
