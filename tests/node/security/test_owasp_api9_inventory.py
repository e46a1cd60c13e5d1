"""OWASP API9:2023 Improper Inventory Management: the OpenAPI is the complete inventory.

Every route the app serves is in the OpenAPI and nothing else is, but for the API's own
documentation pages and the web pages (static files under /web and the two redirects to
them, node/api/web.py); no debug, test or
internal route exists; every operation says who may call it and documents the statuses it
answers; the app does not run in debug mode and serves one API version.
"""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from node.api.edge import api_routes
from node.api.web import WEB_PATHS
from tests.node.conftest import RunningNode

DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
WHO = re.compile(r"\b(anyone|hospital|auditor|admin|wallet|patient)", re.IGNORECASE)
FORBIDDEN_WORDS = ("debug", "test", "internal", "dev", "dump", "eval", "shell", "exec", "sql")


def _app(rn: RunningNode) -> FastAPI:
    app = rn.server.config.app
    assert isinstance(app, FastAPI)
    return app


def test_openapi_lists_exactly_the_served_routes(module_node: RunningNode) -> None:
    app = _app(module_node)
    served = {(m, p) for p, r in api_routes(app) for m in r.methods or () if m != "HEAD"}
    spec = httpx.get(module_node.url + "/openapi.json", timeout=30).json()
    documented = {
        (m.upper(), p)
        for p, item in spec["paths"].items()
        for m in item
        if m in ("get", "post", "put", "patch", "delete")
    }
    assert served == documented
    # every route the router holds is an API route (no stray mounts or raw handlers)
    others = set()
    for route in app.routes:
        path = getattr(route, "path", "")
        if path in DOCS or path in WEB_PATHS or path == "":
            continue
        if not any(path == p or path.startswith(p) for _m, p in served):
            others.add(path)
    assert not others, others
    served_web = {getattr(route, "path", "") for route in app.routes} & WEB_PATHS
    assert served_web == WEB_PATHS  # the pages are built and served (a committed build)


def test_no_debug_or_internal_routes(module_node: RunningNode) -> None:
    app = _app(module_node)
    assert app.debug is False
    for path, _route in api_routes(app):
        words = re.split(r"[/{}_\-.]+", path.lower())
        assert not set(words) & set(FORBIDDEN_WORDS), path
    with httpx.Client(base_url=module_node.url, timeout=30) as http:
        for probe in ("/debug", "/admin", "/.env", "/v2/info", "/api/info", "/console"):
            r = http.get(probe)
            assert r.status_code in (404, 405), (probe, r.status_code)
        # issue 14: /metrics is an inventoried operator route, never open to anyone
        assert http.get("/metrics").status_code == 401


def test_every_operation_says_who_and_documents_its_statuses(module_node: RunningNode) -> None:
    spec = _app(module_node).openapi()
    missing_who, missing_auth = [], []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            summary = op.get("summary", "")
            if not WHO.search(summary):
                missing_who.append(f"{method.upper()} {path}: {summary!r}")
            needs_auth = bool(op.get("security"))
            statuses = set(op.get("responses", {}))
            if needs_auth and not {"401", "403"} <= statuses:
                missing_auth.append(f"{method.upper()} {path}: {sorted(statuses)}")
    assert not missing_who, missing_who
    assert not missing_auth, missing_auth
    assert spec["info"]["version"]
