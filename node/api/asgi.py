"""The API process's application factory, for uvicorn's own process manager.

``emr-node run`` and ``emr-node api`` start ``uvicorn.run("node.api.asgi:create_api_app",
factory=True, workers=N)``: every API process calls this factory once, builds its node in
role "api" from the environment (``EMR_*``; the CLI puts its options there) and serves it.
"""

from __future__ import annotations

import multiprocessing

from fastapi import FastAPI

from node.api.app import create_app
from node.api.server import configure_bounded_protocol
from node.observability.logging import configure_logging
from node.roles.lifetime import die_with_parent
from node.settings import Settings
from node.wiring import build_node


def create_api_app() -> FastAPI:
    if multiprocessing.parent_process() is not None:  # one of uvicorn's worker processes
        die_with_parent()
    settings = Settings()
    configure_logging(settings.log.format, settings.log.level)  # a new process: set it up
    configure_bounded_protocol(settings.api)  # this process's request-head limits
    return create_app(build_node(settings, role="api"))
