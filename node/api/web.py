"""The patient portal and the auditor explorer (issue 13): static pages built from
node/web/src into node/web/static, served under /web to anyone. They hold no secret and
call the same API as every other client, with the caller's own session or token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.requests import Request
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
MOUNT = "/web"
PAGES = {"/portal": "/web/portal/", "/explorer": "/web/explorer/"}
# Everything the app serves besides the API operations (the inventory test holds to it).
WEB_PATHS = frozenset({MOUNT, *PAGES})


def install_web(app: FastAPI, static: Path = STATIC) -> None:
    """Serve the built pages under /web, and short addresses that redirect to them."""
    if not (static / "portal" / "index.html").is_file():
        return  # a checkout without the build: the API still runs
    app.mount(MOUNT, StaticFiles(directory=static, html=True), name="web")
    # Plain Starlette routes, not API operations: they are not in the OpenAPI document.
    for short, target in PAGES.items():
        app.add_route(short, _redirect_to(target), methods=["GET"], include_in_schema=False)


def _redirect_to(target: str) -> Callable[[Request], Awaitable[RedirectResponse]]:
    # A fixed target: nothing the caller sends can change where the redirect goes.
    async def redirect(_request: Request) -> RedirectResponse:
        return RedirectResponse(target, status_code=307)

    return redirect
