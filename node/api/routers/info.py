"""Public node information and health."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from node.api.deps import NodeDep
from node.api.identity import identify
from node.auth.principal import Role, TokenPrincipal
from node.wiring import Node
from storage.abc import HealthCheckAPI

router = APIRouter(tags=["node"])


class InfoOut(BaseModel):
    hospital: str
    hospital_name: str
    chain_id: int
    contracts: dict[str, str]
    members: list[dict[str, str]]


Status = Literal["ok", "degraded"]


class HealthOut(BaseModel):
    """Anonymous callers (load balancers, uptime probes) get ``status`` only; API tokens
    with the admin or auditor role also get the queues, each component and each worker."""

    status: Status
    pending_anchors: int | None = None
    pending_access_log: int | None = None
    pending_consent_relays: int | None = None
    components: dict[str, dict[str, Any]] | None = None
    workers: dict[str, dict[str, Any]] | None = None


@router.get("/info", response_model=InfoOut, summary="This node, its chain and contracts (anyone)")
def info(node: NodeDep) -> InfoOut:
    d = node.chain.deployment
    return InfoOut(
        hospital=node.hospital,
        hospital_name=node.settings.hospital_name,
        chain_id=node.chain.chain_id,
        contracts={
            "Consortium": d.consortium,
            "RecordRegistry": d.record_registry,
            "ConsentRegistry": d.consent_registry,
            "AccessLog": d.access_log,
        },
        members=[{"address": a, "name": n} for a, n in node.chain.members()],
    )


def _probe(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        detail = check()
    except Exception as err:  # a health probe reports, it never fails the endpoint
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    return {"ok": True, **detail}


def _component(component: HealthCheckAPI) -> dict[str, Any]:
    try:
        health = component.check_health()
    except Exception as err:  # a broken probe reports, it never fails the endpoint
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    return {"ok": health.ok, **health.details}


def _report(node: Node) -> HealthOut:
    components: dict[str, dict[str, Any]] = {
        "chain": _probe(lambda: {"head_block": node.chain.head_block()}),
        "index": _probe(lambda: {"pending_anchors": node.index.count_pending_anchors()}),
    }
    for name, component in node.health_checks.items():
        components[name] = _component(component)
    if node.throttles is not None:
        degraded = node.throttles.degraded
        components["throttle"] = {"ok": not degraded, "mode": "local" if degraded else "shared"}
    workers = {w.name: {"running": w.running, "last_error": w.last_error} for w in node.workers}
    healthy = all(c["ok"] for c in components.values()) and all(
        w["running"] and not w["last_error"] for w in workers.values()
    )
    return HealthOut(
        status="ok" if healthy else "degraded",
        pending_anchors=components["index"].get("pending_anchors", -1),
        pending_access_log=node.access_log.count(),
        pending_consent_relays=node.relays.count(),
        components=components,
        workers=workers,
    )


# Anonymous health checks are not throttled: they share one report per second, so probing
# Redis, IPFS and the chain cannot be driven by anyone's request rate.
_PUBLIC_TTL = 1.0
_public: dict[int, tuple[float, Status]] = {}
_public_lock = threading.Lock()


def _public_status(node: Node) -> Status:
    cached = _public.get(id(node))
    if cached is not None and time.monotonic() - cached[0] < _PUBLIC_TTL:
        return cached[1]
    # One report at a time; callers arriving meanwhile get the previous answer rather than
    # queue up behind a slow probe.
    if not _public_lock.acquire(blocking=cached is None):
        assert cached is not None
        return cached[1]
    try:
        cached = _public.get(id(node))
        if cached is not None and time.monotonic() - cached[0] < _PUBLIC_TTL:
            return cached[1]
        status = _report(node).status
        _public[id(node)] = (time.monotonic(), status)
        return status
    finally:
        _public_lock.release()


@router.get(
    "/health",
    response_model=HealthOut,
    response_model_exclude_none=True,
    summary="Liveness for anyone; queues, components and workers for admin and auditor tokens",
)
def health(request: Request, node: NodeDep) -> HealthOut:
    caller = identify(node, request.scope)
    if isinstance(caller, TokenPrincipal) and caller.has(Role.AUDITOR):
        return _report(node)
    return HealthOut(status=_public_status(node))
