"""The HTTP edge: pure ASGI middleware between the socket and the routes.

Outermost first (``install_edge`` adds them; throttling sits between the last two):

- ``TrustedHosts`` refuses requests whose ``Host`` is not one the node serves (400
  ``untrusted_host``), so a phishing site cannot proxy to the node under its own name.
- ``SecurityHeaders`` puts browser-hardening headers on every response and answers CORS
  only for the configured origins.
- ``BodyGuard`` answers 401 for a body sent to a route that needs a caller before reading
  any of it, 413 when the declared or streamed size passes the route's limit, and 408 when a
  body arrives too slowly. Parsing (JSON, multipart) only ever sees bodies that passed.

Refusals use the node's error shape ``{"error": code, "detail": reason}`` and close the
connection, so the unread rest of a refused body is never read.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import fastapi.routing
from fastapi import FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.routing import compile_path

from node.api.deps import get_principal
from node.api.identity import bearer_token, identify, identify_cached
from node.fhir.common import is_fhir_path, refusal_outcome
from node.observability.logging import current_request_id
from node.settings import ApiSettings, Settings
from node.wiring import Node

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Room for the multipart framing and form fields around an upload's file.
MULTIPART_OVERHEAD = 64 * 1024
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


API_CSP = "default-src 'none'; frame-ancestors 'none'"
HARDENING = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),  # records and their metadata are PHI
)


async def _refuse(
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    scope: Scope | None = None,
) -> None:
    """An error in the node's shape (under /fhir: an OperationOutcome); the connection
    closes after it (the rest of a refused body is never read). Carries the hardening
    headers even outside ``SecurityHeaders``."""
    error: dict[str, str] = {"error": code, "detail": detail}
    request_id = current_request_id()
    if request_id is not None:  # issue 14: set by the request middleware
        error["request_id"] = request_id
    body = json.dumps(error).encode()
    content_type = b"application/json"
    if scope is not None and is_fhir_path(scope.get("path", "")):  # issue 12
        content_type, body = refusal_outcome(code, detail)
    hardening = [*HARDENING, ("Content-Security-Policy", API_CSP)]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
                *((k.lower().encode(), v.encode()) for k, v in hardening),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- trusted hosts ----------------------------------------------------------------------


def host_name(value: str) -> str | None:
    """The host of a ``Host`` header value (no port, lower case), None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):  # [v6]:port
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
    else:
        name, colon, port = value.partition(":")
        if colon and not re.fullmatch(r"\d{1,5}", port):
            return None
    name = name.rstrip(".")
    return name if name and re.fullmatch(r"[a-z0-9._:-]+", name) else None


def trusted_hosts(settings: Settings) -> list[str]:
    """Host names the node answers to: its public URL's and SIWE domain's, the configured
    ones, and on the embedded default the loopback names."""
    api = settings.api
    hosts = [urlsplit(api.resolved_public_url).hostname or ""]
    if api.siwe_domain:
        hosts.append(host_name(api.siwe_domain) or "")
    hosts += api.trusted_hosts
    if settings.mode == "embedded":
        hosts += LOOPBACK_HOSTS
    return [h for h in dict.fromkeys(hosts) if h]


class TrustedHosts:
    """400 ``untrusted_host`` unless the ``Host`` header names one of ``hosts`` (exact
    names, or ``*.domain`` for every subdomain of domain)."""

    def __init__(self, app: ASGIApp, *, hosts: Iterable[str]) -> None:
        self.app = app
        hosts = [h.lower() for h in hosts]
        self.exact = frozenset(h for h in hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))

    def allows(self, host: str | None) -> bool:
        return host is not None and (host in self.exact or host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = _header(scope, b"host")
        if self.allows(host_name(raw) if raw is not None else None):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await _refuse(
            send,
            400,
            "untrusted_host",
            "this node does not serve the host named in the request; use its public URL",
        )


# -- security headers and CORS ----------------------------------------------------------

# FastAPI's Swagger UI and ReDoc pages load their scripts, styles and fonts from CDNs and
# start with an inline script; only those pages get this policy.
_DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
# The portal and explorer (issue 13): scripts, styles and requests from this node only, no
# inline script, no framing; images may be data: URLs (charts are inline SVG).
WEB_PREFIX = "/web/"
_WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type"
# Response headers a browser script may read (besides the CORS-safelisted ones).
CORS_EXPOSE = "Retry-After, X-Record-Id, X-Access-Basis, X-Content-SHA256, X-Total-Count"


class SecurityHeaders:
    """Hardening headers on every response (set unless the route chose its own), and CORS
    for exactly ``cors_origins``: any other origin gets no ``Access-Control-*`` header."""

    def __init__(self, app: ASGIApp, *, hsts: bool, cors_origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(o.lower() for o in cors_origins)
        common = list(HARDENING)
        if hsts:
            common.append(("Strict-Transport-Security", "max-age=31536000"))
        if self.origins:
            common.append(("Vary", "Origin"))
        self.api = [*common, ("Content-Security-Policy", API_CSP)]
        self.docs = [*common, ("Content-Security-Policy", _DOCS_CSP)]
        self.web = [*common, ("Content-Security-Policy", _WEB_CSP)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in DOCS_PATHS:
            extra = self.docs
        elif path.startswith(WEB_PREFIX):
            extra = self.web
        else:
            extra = self.api
        origin = _header(scope, b"origin")
        if origin is not None and origin.lower() in self.origins:
            extra = [*extra, ("Access-Control-Allow-Origin", origin)]
            if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
                return await self._preflight(send, extra)
            extra.append(("Access-Control-Expose-Headers", CORS_EXPOSE))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _preflight(send: Send, extra: list[tuple[str, str]]) -> None:
        headers = [
            *extra,
            ("Access-Control-Allow-Methods", CORS_METHODS),
            ("Access-Control-Allow-Headers", CORS_HEADERS),
            ("Access-Control-Max-Age", "600"),
        ]
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": b""})


# -- body guard -------------------------------------------------------------------------


def _calls(dependant: Dependant) -> Iterator[Any]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def needs_caller(route: APIRoute) -> bool:
    """Whether the route's dependency tree resolves the caller (``deps.get_principal``)."""
    return any(call is get_principal for call in _calls(route.dependant))


def takes_files(route: APIRoute) -> bool:
    return any(isinstance(f.field_info, params.File) for f in route.dependant.body_params)


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """(full path, route) of the app's FastAPI routes in matching order. FastAPI >= 0.16x
    includes routers lazily; older versions list the routes themselves."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:
        return [(r.path, r) for r in app.routes if isinstance(r, APIRoute)]
    return [
        (c.path, c.original_route)
        for c in iter_contexts(app.routes)
        if isinstance(c.original_route, APIRoute)
    ]


_BATCH_UPLOADS: set[Callable[..., Any]] = set()

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def batch_upload(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint as a batch upload: its body may reach
    ``api.batch_max_bytes`` (every other upload: one file, ``max_upload_bytes`` plus the
    multipart framing). Put it below the router's decorator."""
    _BATCH_UPLOADS.add(endpoint)
    return endpoint


@dataclass(frozen=True)
class BodyRule:
    methods: frozenset[str]
    path: re.Pattern[str]
    needs_caller: bool
    limit: int
    what: str  # for the 413 message

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and self.path.match(path) is not None


def body_rules(app: FastAPI, api: ApiSettings) -> list[BodyRule]:
    rules = []
    for path, route in api_routes(app):
        if route.endpoint in _BATCH_UPLOADS:
            limit, what = api.batch_max_bytes, "batch upload"
        elif takes_files(route):
            limit, what = api.max_upload_bytes + MULTIPART_OVERHEAD, "upload"
        else:
            limit, what = api.max_json_bytes, "request body"
        rules.append(
            BodyRule(
                methods=frozenset(route.methods or ()),
                path=compile_path(path)[0],
                needs_caller=needs_caller(route),
                limit=limit,
                what=what,
            )
        )
    return rules


MAX_JSON_DEPTH = 64
# Nesting depth does not depend on the bracket kind: every opening bracket becomes "(",
# every closing one ")", everything else goes.
_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``limit``; brackets inside
    strings do not count, malformed text is left to the parser. Linear passes in C (a few
    ms for a MiB), so that a body is judged before a recursive parser sees it."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")  # escapes cannot end a string
    outside = b"".join(text.split(b'"')[0::2])
    parens = outside.translate(_PARENS, _NOT_BRACKETS)
    too_deep = b"(" * (limit + 1)
    for depth_left in range(limit, -1, -1):
        if too_deep[: depth_left + 1] in parens:  # a run of openings deeper than allowed
            return True
        reduced = parens.replace(b"()", b"")  # removes the innermost level of every nest
        if len(reduced) == len(parens):
            return False
        parens = reduced
    return False


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def unauthenticated_reason(scope: Scope) -> str:
    token = bearer_token(scope.get("headers", []))
    if token is None:
        return "send 'Authorization: Bearer <API token or wallet session>'"
    if token.startswith("emrs_"):
        return "wallet session is unknown, expired or ended: sign in again"
    return "API token is unknown, expired or revoked"


class BodyGuard:
    """Authentication before the body, and size and time limits while it streams.

    ``rules`` come from ``body_rules`` (built once, when the app starts); requests that
    match no route get the JSON limit and no caller check (the router answers 404/405).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        node: Node,
        rules: Callable[[], list[BodyRule]],
    ) -> None:
        self.app = app
        self.node = node
        api = node.settings.api
        self.rules = rules()
        self.default = BodyRule(frozenset(), re.compile(""), False, api.max_json_bytes, "body")
        self.read_timeout = api.body_timeout
        self.total_timeout = api.body_total_timeout

    def rule(self, scope: Scope) -> BodyRule:
        method, path = scope["method"], scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return next((r for r in self.rules if r.matches(method, path)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rule = self.rule(scope)
        length_header = _header(scope, b"content-length")
        chunked = "chunked" in (_header(scope, b"transfer-encoding") or "").lower()
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            return await _refuse(
                send, 400, "invalid_request", "Content-Length is not a number", scope=scope
            )
        if not chunked and not length:  # no body (HTTP/1.1: no length, no chunks)
            return await self.app(scope, receive, send)
        if rule.needs_caller and not await self._identified(scope):
            return await _refuse(
                send,
                401,
                "unauthenticated",
                unauthenticated_reason(scope),
                [(b"www-authenticate", b"Bearer")],
                scope,
            )
        if length is not None and length > rule.limit:
            return await _refuse(send, 413, "payload_too_large", self._too_large(rule), scope=scope)
        await self._stream(scope, receive, send, rule)

    async def _identified(self, scope: Scope) -> bool:
        known = identify_cached(self.node.auth, scope)  # no thread hop for a cached caller
        if known is not False:
            return known is not None
        try:
            return await run_in_threadpool(identify, self.node.auth, scope) is not None
        except Exception:  # a backend outage: the route's own check answers it (503)
            return True

    def _too_large(self, rule: BodyRule) -> str:
        return f"the {rule.what} exceeds the limit of {rule.limit} bytes"

    async def _stream(self, scope: Scope, receive: Receive, send: Send, rule: BodyRule) -> None:
        received = 0
        finished = False
        deadline: float | None = None
        refused: _Refused | None = None
        started = False
        check_json = rule.what != "upload" and _is_json(_header(scope, b"content-type"))
        replayed = False

        def refuse(status: int, code: str, detail: str) -> _Refused:
            nonlocal refused
            refused = _Refused(status, code, detail)
            return refused

        async def guarded_receive() -> Message:
            nonlocal received, finished, deadline
            if refused is not None:
                return {"type": "http.disconnect"}
            if finished:
                return await receive()
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.total_timeout
            try:
                async with asyncio.timeout(min(self.read_timeout, deadline - now)):
                    message = await receive()
            except TimeoutError:
                raise refuse(
                    408,
                    "request_timeout",
                    f"the request body did not arrive in time (each part within "
                    f"{self.read_timeout:g} s, all of it within {self.total_timeout:g} s)",
                ) from None
            if message["type"] != "http.request":
                finished = True
                return message
            received += len(message.get("body", b""))
            if received > rule.limit:
                raise refuse(413, "payload_too_large", self._too_large(rule))
            finished = not message.get("more_body", False)
            return message

        async def json_receive() -> Message:
            """The whole (bounded) JSON body at once, after a nesting check: the JSON
            parser recurses on the C stack, and the process's recursion limit is raised
            (py_ecc), so deep nesting would crash the process rather than raise."""
            nonlocal replayed
            if replayed:
                return await guarded_receive()
            parts = []
            while True:
                message = await guarded_receive()
                if message["type"] != "http.request":
                    return message
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(parts)
            many = body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH  # else: cannot be
            if many and await run_in_threadpool(json_nesting_exceeds, body, MAX_JSON_DEPTH):
                raise refuse(
                    400, "invalid_request", f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
                )
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                return  # the app's answer to a body cut short; ours follows
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, json_receive if check_json else guarded_receive, guarded_send)
        except Exception:
            if refused is None or started:
                raise
        if refused is not None and not started:
            await _refuse(send, refused.status, refused.code, refused.detail, scope=scope)


def install_body_guard(app: FastAPI, node: Node) -> None:
    """Innermost edge layer; its route table is built when the app starts (all routers
    are included by then)."""
    app.add_middleware(
        BodyGuard,  # type: ignore[arg-type]
        node=node,
        rules=lambda: body_rules(app, node.settings.api),
    )


def install_headers(app: FastAPI, settings: Settings) -> None:
    api = settings.api
    app.add_middleware(
        SecurityHeaders,  # type: ignore[arg-type]
        hsts=urlsplit(api.resolved_public_url).scheme == "https",
        cors_origins=api.cors_origins,
    )


def install_trusted_hosts(app: FastAPI, settings: Settings) -> None:
    """Outermost layer."""
    app.add_middleware(TrustedHosts, hosts=trusted_hosts(settings))  # type: ignore[arg-type]
