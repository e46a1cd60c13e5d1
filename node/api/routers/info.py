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


@router.get("/health", response_model=HealthOut, summary="Liveness and queue depths (anyone)")
def health(node: NodeDep) -> HealthOut:
    workers = {w.name: {"last_error": w.last_error} for w in (node.anchorer, node.access_flusher)}
    degraded = any(w["last_error"] for w in workers.values())
    return HealthOut(
        status="degraded" if degraded else "ok",
        pending_anchors=node.index.count_pending_anchors(),
        pending_access_log=node.access_log.count(),
        workers=workers,
    )
