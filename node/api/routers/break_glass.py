"""Break-glass emergency access: opened by the hospital's systems for a clinician of its
directory, approved by another, with a mandatory reason; every opening shows in the
patient's own feed."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from node.api.deps import ChainDep, DirectoryDep, HospitalDep, MetricsDep, SettingsDep, WalletDep
from node.api.schemas.common import MAX_INT64, to_bytes, to_hex
from node.api.schemas.consent import (
    BreakGlassFeedOut,
    BreakGlassIn,
    BreakGlassNoticeOut,
    BreakGlassOut,
)
from node.flows.break_glass import BreakGlassRequest, break_glass_notices, open_break_glass

router = APIRouter(tags=["consent"])


@router.post(
    "/break-glass",
    response_model=BreakGlassOut,
    status_code=201,
    summary="Open emergency access for a clinician of this hospital's directory, approved by "
    "another (hospital token)",
    description="Policy: docs (break-glass). The clinician and the approver must be in the "
    "directory with a role allowed by `break_glass.roles` / `break_glass.approver_roles`; "
    "the duration is capped by `break_glass.max_duration`; a live break-glass of the same "
    "clinician on the patient cannot be renewed; openings per clinician and per patient are "
    "capped over a rolling window. Only a salted commitment to the reason, the approver and "
    "the token's name goes on-chain.",
    responses={
        400: {"description": "blank reason, or duration above break_glass.max_duration"},
        401: {"description": "no or unknown API token"},
        403: {
            "description": "not a hospital token; clinician or approver not in the directory, "
            "without an allowed role or with an expired licence; self-approval"
        },
        409: {"description": "the clinician already has live break-glass on this patient"},
        422: {"description": "malformed body (addresses, record id, missing approved_by)"},
        429: {"description": "cap of openings per clinician or per patient reached"},
        503: {"description": "the chain is unreachable"},
    },
)
def open_access(
    body: BreakGlassIn,
    chain: ChainDep,
    directory: DirectoryDep,
    settings: SettingsDep,
    caller: HospitalDep,
    metrics: MetricsDep,
) -> BreakGlassOut:
    result = open_break_glass(
        BreakGlassRequest(
            patient=body.patient,
            clinician=body.clinician,
            record_id=to_bytes(body.record_id) if body.record_id else None,
            duration=body.duration_seconds,
            reason=body.reason,
            approved_by=body.approved_by,
            opened_by=caller.name,
        ),
        chain=chain,
        clinicians=directory,
        ledger=directory,
        policy=settings.break_glass,
        now=int(time.time()),
    )
    metrics.count("emr_break_glass_total", hospital=chain.hospital)
    salt = result.commitment.salt
    assert salt is not None
    return BreakGlassOut(
        tx_hash=to_hex(result.tx.tx_hash),
        block_number=result.tx.block_number,
        reason_hash=to_hex(result.reason_hash),
        reason_salt=to_hex(salt),
        expires_at=result.expires_at,
        approved_by=body.approved_by,
        opened_by=caller.name,
    )


@router.get(
    "/me/break-glass",
    response_model=BreakGlassFeedOut,
    tags=["records"],
    summary="Every break-glass opened on my records, by any member hospital (wallet session: "
    "the patient)",
    description="For each: clinician, hospital, expiry, transaction and, when this node "
    "opened it, the reason with its salt, the approver and the token's name (and whether "
    "they recompute the on-chain hash). Pass the previous answer's `as_of` as `since` to get "
    "only what is new since then.",
    responses={
        401: {"description": "no, unknown or expired wallet session"},
        403: {"description": "not a wallet session (API tokens use /audit/events)"},
        422: {"description": "since is not a non-negative integer"},
        503: {"description": "the chain is unreachable"},
    },
)
def my_break_glass(
    chain: ChainDep,
    directory: DirectoryDep,
    wallet: WalletDep,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_INT64, description="unix seconds, inclusive")
    ] = None,
) -> BreakGlassFeedOut:
    now = int(time.time())
    notices = break_glass_notices(wallet.address, since=since, chain=chain, reasons=directory)
    return BreakGlassFeedOut(
        patient=wallet.address,
        as_of=now,
        break_glass=[BreakGlassNoticeOut.of(n, now) for n in notices],
    )
