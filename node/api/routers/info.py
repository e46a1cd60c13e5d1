"""Public node information and health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from node.api.deps import NodeDep

router = APIRouter(tags=["node"])


class InfoOut(BaseModel):
    hospital: str
    hospital_name: str
    chain_id: int
    contracts: dict[str, str]
    members: list[dict[str, str]]


class HealthOut(BaseModel):
    status: str
    pending_anchors: int
    pending_access_log: int
    pending_consent_relays: int
    components: dict[str, Any]
    workers: dict[str, Any]


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


def _probe(check: Any) -> dict[str, Any]:
    try:
        detail = check()
    except Exception as err:  # a health probe reports, it never fails the endpoint
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    return {"ok": True, **(detail or {})}


@router.get("/health", response_model=HealthOut, summary="Liveness, components and queues (anyone)")
def health(node: NodeDep) -> HealthOut:
    components: dict[str, dict[str, Any]] = {
        "chain": _probe(lambda: {"head_block": node.chain.head_block()}),
        "index": _probe(lambda: {"pending_anchors": node.index.count_pending_anchors()}),
    }
    ping = getattr(node.cache, "ping", None)  # a shared cache is probed, not assumed
    if callable(ping):
        components["cache"] = {"ok": bool(ping()), "backend": type(node.cache).__name__}
    blob_health = getattr(node.blobs, "health", None)
    if callable(blob_health):
        components["blobs"] = _probe(lambda: {"nodes": blob_health()})
    if node.throttles is not None:
        degraded = any(getattr(t, "degraded", False) for t in node.throttles)
        components["throttle"] = {"ok": not degraded, "mode": "local" if degraded else "shared"}
    workers = {w.name: {"last_error": w.last_error} for w in node.workers}
    healthy = all(c["ok"] for c in components.values()) and not any(
        w["last_error"] for w in workers.values()
    )
    return HealthOut(
        status="ok" if healthy else "degraded",
        pending_anchors=components["index"].get("pending_anchors", -1),
        pending_access_log=node.access_log.count(),
        pending_consent_relays=node.relays.count(),
        components=components,
        workers=workers,
    )
