"""Break-glass emergency access, opened by the hospital's systems with a mandatory reason."""

from __future__ import annotations

from fastapi import APIRouter

from node.api.deps import HospitalDep, NodeDep
from node.api.schemas.common import to_bytes, to_hex
from node.api.schemas.consent import BreakGlassIn, BreakGlassOut
from node.flows.break_glass import open_break_glass

router = APIRouter(prefix="/break-glass", tags=["consent"])


@router.post(
    "",
    response_model=BreakGlassOut,
    status_code=201,
    summary="Open emergency access (hospital token)",
)
def open_access(body: BreakGlassIn, node: NodeDep, caller: HospitalDep) -> BreakGlassOut:
    result, reason_hash = open_break_glass(
        body.patient,
        body.clinician,
        to_bytes(body.record_id) if body.record_id else None,
        body.duration_seconds,
        body.reason,
        chain=node.chain,
        max_duration=node.settings.api.max_break_glass_seconds,
    )
    node.directory.save_reason(reason_hash, body.reason, caller.name, result.tx_hash)
    return BreakGlassOut(
        tx_hash=to_hex(result.tx_hash),
        block_number=result.block_number,
        reason_hash=to_hex(reason_hash),
    )
