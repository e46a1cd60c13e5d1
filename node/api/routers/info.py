"""Public node information and health."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from node.api.deps import (
    AccessLogDep,
    AuthDep,
    BackgroundDep,
    ChainDep,
    HealthChecksDep,
    IndexDep,
    RelaysDep,
    SettingsDep,
    ThrottlesDep,
)
from node.api.identity import identify
from node.audit.abc import AccessLogQueueAPI
from node.auth.principal import Role, TokenPrincipal
from node.chain.abc import ChainClientAPI
from node.consent.relay_queue import ConsentRelayQueue
from node.roles.abc import BackgroundWorkersAPI
from node.throttle import CallerThrottles
from storage.abc import HealthCheckAPI, RecordIndexAPI

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
def info(chain: ChainDep, settings: SettingsDep) -> InfoOut:
    d = chain.deployment
    return InfoOut(
        hospital=chain.hospital,
        hospital_name=settings.hospital_name,
        chain_id=chain.chain_id,
        contracts={
            "Consortium": d.consortium,
            "RecordRegistry": d.record_registry,
            "ConsentRegistry": d.consent_registry,
            "AccessLog": d.access_log,
        },
        members=[{"address": a, "name": n} for a, n in chain.members()],
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


@dataclass(frozen=True)
class HealthSources:
    """What the health report reads."""

    chain: ChainClientAPI
    index: RecordIndexAPI
    access_log: AccessLogQueueAPI
    relays: ConsentRelayQueue
    background: BackgroundWorkersAPI
    throttles: CallerThrottles | None
    checks: Mapping[str, HealthCheckAPI]  # components that depend on a service that can be down


async def health_sources(
    chain: ChainDep,
    index: IndexDep,
    access_log: AccessLogDep,
    relays: RelaysDep,
    background: BackgroundDep,
    throttles: ThrottlesDep,
    checks: HealthChecksDep,
) -> HealthSources:
    return HealthSources(chain, index, access_log, relays, background, throttles, checks)


HealthSourcesDep = Annotated[HealthSources, Depends(health_sources)]


def _report(src: HealthSources) -> HealthOut:
    components: dict[str, dict[str, Any]] = {
        "chain": _probe(lambda: {"head_block": src.chain.head_block()}),
        "index": _probe(lambda: {"pending_anchors": src.index.count_pending_anchors()}),
    }
    for name, component in src.checks.items():
        components[name] = _component(component)
    if src.throttles is not None:
        degraded = src.throttles.degraded
        components["throttle"] = {"ok": not degraded, "mode": "local" if degraded else "shared"}
    workers = {
        name: {"running": s.running, "last_error": s.last_error}
        for name, s in src.background.status().items()
    }
    if not workers:  # an API process whose worker role does not answer
        components["worker"] = {"ok": False, "error": "the worker role cannot be reached"}
    healthy = all(c["ok"] for c in components.values()) and all(
        w["running"] and not w["last_error"] for w in workers.values()
    )
    return HealthOut(
        status="ok" if healthy else "degraded",
        pending_anchors=components["index"].get("pending_anchors", -1),
        pending_access_log=src.access_log.count(),
        pending_consent_relays=src.relays.count(),
        components=components,
        workers=workers,
    )


# Anonymous health checks are not throttled: they share one report per second, so probing
# Redis, IPFS and the chain cannot be driven by anyone's request rate.
_PUBLIC_TTL = 1.0
_public: dict[int, tuple[float, Status]] = {}
_public_lock = threading.Lock()


def _public_status(src: HealthSources) -> Status:
    cached = _public.get(id(src.index))
    if cached is not None and time.monotonic() - cached[0] < _PUBLIC_TTL:
        return cached[1]
    # One report at a time; callers arriving meanwhile get the previous answer rather than
    # queue up behind a slow probe.
    if not _public_lock.acquire(blocking=cached is None):
        assert cached is not None
        return cached[1]
    try:
        cached = _public.get(id(src.index))
        if cached is not None and time.monotonic() - cached[0] < _PUBLIC_TTL:
            return cached[1]
        status = _report(src).status
        _public[id(src.index)] = (time.monotonic(), status)
        return status
    finally:
        _public_lock.release()


@router.get(
    "/health",
    response_model=HealthOut,
    response_model_exclude_none=True,
    summary="Liveness for anyone; queues, components and workers for admin and auditor tokens",
)
def health(request: Request, auth: AuthDep, sources: HealthSourcesDep) -> HealthOut:
    caller = identify(auth, request.scope)
    if isinstance(caller, TokenPrincipal) and caller.has(Role.AUDITOR):
        return _report(sources)
    return HealthOut(status=_public_status(sources))
