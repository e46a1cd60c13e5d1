"""The FastAPI application. Logging handlers are configured here and in the CLI only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from node.api.access_log import install_access_log_redaction
from node.api.edge import install_body_guard, install_headers, install_trusted_hosts
from node.api.errors import install_error_handlers
from node.api.openapi import install_openapi
from node.api.routers import (
    admin,
    audit,
    auth,
    break_glass,
    consents,
    dicomweb,  # issue 12: DICOMweb (STOW-RS, QIDO-RS, WADO-RS)
    fhir,  # issue 12: FHIR R4 façade
    governance,
    info,
    ops,  # issue 14: /metrics, /healthz, /readyz
    patients,
    records,
    wallets,  # issue 13: patients' recoverable wallets
    zk,
    zk_policies,
)
from node.api.routers.ops import install_node_probes, install_observability
from node.api.throttling import install_throttling
from node.api.web import install_web  # issue 13: portal and explorer pages
from node.fhir.common import install_fhir_errors  # issue 12
from node.wiring import Node

DESCRIPTION = """
An emr-node: one hospital's node of a permissioned EVM chain that keeps medical records.

**Who may call what.** Hospital systems send an API token (`Authorization: Bearer emr_...`)
with a role: `hospital` (upload, list, break-glass, clinicians), `auditor` (audit trail,
verification) or `admin` (everything, tokens). People sign in with their wallet
(Sign-In with Ethereum, `/auth/challenge` then `/auth/login`) and send the session
(`Bearer emrs_...`) to read records. Consent endpoints need no token: the patient's EIP-712
signature is the authority, and the node pays the gas.
"""


def create_app(node: Node, *, stop_on_shutdown: bool = True) -> FastAPI:
    """An app serving ``node``; the node's workers start and stop with the app."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        node.start()
        try:
            yield
        finally:
            if stop_on_shutdown:
                node.stop()

    app = FastAPI(title="emr-node", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.node = node
    install_error_handlers(app)
    install_access_log_redaction()  # query values never reach the access log
    # Middleware, innermost first: body guard, throttle, security headers/CORS, trusted hosts.
    install_body_guard(app, node)  # caller before body; size and slow-body limits
    install_throttling(app, node)  # by authenticated caller; off unless node.throttles
    install_headers(app, node.settings)
    install_trusted_hosts(app, node.settings)
    install_observability(app, node.metrics)  # outermost: request id, request log, metrics
    install_node_probes(app, node)  # /readyz and /metrics' cached checks
    # zk_policies before zk: its /zk/policies/{category} routes come first.
    routers = (info, ops, auth, records, patients, consents, break_glass, audit, admin, governance)
    for module in (*routers, wallets, zk_policies, zk):
        app.include_router(module.router)
    app.include_router(dicomweb.router)  # issue 12: DICOMweb under /dicomweb
    if node.settings.fhir.enabled:  # issue 12: FHIR errors as OperationOutcome under /fhir
        app.include_router(fhir.router)
        install_fhir_errors(app)
    install_web(app)
    install_openapi(app)  # every route's error statuses and the error body's schema
    return app
