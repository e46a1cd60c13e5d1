"""The audit trail, read from the chain's logs, and record verification against anchors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from node.api.deps import (
    AuditorDep,
    BlobsDep,
    ChainDep,
    DirectoryDep,
    IndexDep,
    KeyAuditDep,
    KeysDep,
    MirrorDep,
    PrincipalDep,
)
from node.api.schemas.common import (
    MAX_INT64,
    AddressParam,
    Hex32Param,
    IntPair,
    parse_address,
    parse_hex32,
    to_hex,
)
from node.api.schemas.consent import ReasonDisclosureOut, StoredReasonOut
from node.audit.key_log import verify_key_audit
from node.audit.mirror import verify_mirror
from node.auth.principal import Role, WalletPrincipal
from node.chain.models import AuditEvent
from node.exceptions import Forbidden, NotFound
from node.flows.anchor_key_audit import key_audit_addresses
from node.flows.audit_trail import verify_record
from node.flows.break_glass import disclose, disclose_event

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEventOut(BaseModel):
    event: str
    contract: str
    block_number: int
    timestamp: int
    tx_hash: str
    log_index: int
    args: dict[str, Any]
    reason: str | None = None  # break-glass reason text, matched by its on-chain hash
    disclosure: ReasonDisclosureOut | None = Field(
        None,
        description="BreakGlassOpened sent by this node: reason, salt, approver and token "
        "name, and whether they recompute the event's reasonHash",
    )


class VerificationOut(BaseModel):
    record_id: str
    verified: bool
    anchored: bool
    content_hash: str
    batch_id: int | None
    root: str | None
    root_on_chain: bool
    proof_valid_on_chain: bool
    stored_content_intact: bool | None
    tx_hash: str | None
    proof: list[str]


def _jsonable(value: Any) -> Any:
    return to_hex(value) if isinstance(value, bytes) else value


@router.get(
    "/events",
    response_model=list[AuditEventOut],
    summary="Audit events by patient, record, actor, time (auditor; a wallet: its own)",
)
def events(
    chain: ChainDep,
    mirror: MirrorDep,
    directory: DirectoryDep,
    principal: PrincipalDep,
    patient: Annotated[AddressParam | None, Query()] = None,
    record_id: Annotated[Hex32Param | None, Query()] = None,
    actor: Annotated[
        AddressParam | None, Query(description="clinician, grantee or hospital address")
    ] = None,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_INT64, description="unix seconds, inclusive")
    ] = None,
    until: Annotated[
        int | None, Query(ge=0, le=MAX_INT64, description="unix seconds, inclusive")
    ] = None,
    source: Annotated[
        Literal["chain", "mirror"],
        Query(description="chain: the logs themselves; mirror: the SQL copy (fast, may lag)"),
    ] = "chain",
) -> list[AuditEventOut]:
    patient = parse_address("patient", patient) if patient is not None else None
    rid = parse_hex32("record_id", record_id) if record_id is not None else None
    actor = parse_address("actor", actor) if actor is not None else None
    if isinstance(principal, WalletPrincipal):
        if patient not in (None, principal.address):
            raise Forbidden("a wallet may read only its own audit trail")
        patient = principal.address
    elif not principal.has(Role.AUDITOR):
        raise Forbidden("the audit trail needs an auditor token")
    if source == "mirror":
        found = [
            AuditEvent(**e)
            for e in mirror.mirrored_events(
                patient=patient, record_id=rid, actor=actor, since=since, until=until, limit=100_000
            )
        ]
    else:
        found = chain.audit_events(patient=patient, record_id=rid, actor=actor)
    out = []
    for e in found:
        if (since is not None and e.timestamp < since) or (
            until is not None and e.timestamp > until
        ):
            continue
        disclosure = disclose_event(e, reasons=directory)
        reason = disclosure.commitment.reason if disclosure else None
        out.append(
            AuditEventOut(
                event=e.event,
                contract=e.contract,
                block_number=e.block_number,
                timestamp=e.timestamp,
                tx_hash=to_hex(e.tx_hash),
                log_index=e.log_index,
                args={k: _jsonable(v) for k, v in e.args.items()},
                reason=reason,
                disclosure=ReasonDisclosureOut.of(disclosure) if disclosure else None,
            )
        )
    return out


@router.get(
    "/records/{record_id}/verify",
    response_model=VerificationOut,
    summary="Verify a record's content hash against its anchored Merkle root (auditor token)",
)
def verify(
    record_id: Hex32Param,
    index: IndexDep,
    chain: ChainDep,
    blobs: BlobsDep,
    keys: KeysDep,
    principal: PrincipalDep,
    content_hash: Annotated[
        Hex32Param | None, Query(description="hash to check; default the indexed one")
    ] = None,
) -> VerificationOut:
    if isinstance(principal, WalletPrincipal) or not principal.has(Role.AUDITOR):
        raise Forbidden("verification needs an auditor token")
    rid = parse_hex32("record_id", record_id)
    claimed = parse_hex32("content_hash", content_hash) if content_hash is not None else None
    v = verify_record(
        rid,
        index=index,
        chain=chain,
        blobs=blobs,
        keys=keys,
        claimed_content_hash=claimed,
    )
    return VerificationOut(
        record_id=to_hex(v.record_id),
        verified=v.verified,
        anchored=v.anchored,
        content_hash=to_hex(v.content_hash),
        batch_id=v.batch_id,
        root=to_hex(v.root) if v.root else None,
        root_on_chain=v.root_on_chain,
        proof_valid_on_chain=v.proof_valid_on_chain,
        stored_content_intact=v.stored_content_intact,
        tx_hash=to_hex(v.receipt.batch.tx_hash) if v.receipt and v.receipt.batch else None,
        proof=[to_hex(p) for p in v.receipt.proof] if v.receipt else [],
    )


@router.get(
    "/reasons/{reason_hash}",
    response_model=StoredReasonOut,
    summary="Disclose the break-glass or erasure reason behind an on-chain reasonHash, with "
    "its salt, and check that it recomputes the hash (auditor token)",
    responses={
        400: {"description": "reason_hash is not 0x followed by 64 hex digits"},
        401: {"description": "no or unknown API token"},
        403: {"description": "not an auditor token"},
        404: {"description": "this node stored no reason under that hash"},
    },
)
def reason(
    reason_hash: Hex32Param, directory: DirectoryDep, _auditor: AuditorDep
) -> StoredReasonOut:
    wanted = parse_hex32("reason_hash", reason_hash)
    found = disclose(wanted, None, reasons=directory)
    if found is None:
        raise NotFound(f"no reason stored under {to_hex(wanted)}")
    return StoredReasonOut(
        **ReasonDisclosureOut.of(found).model_dump(),
        reason_hash=to_hex(wanted),
        tx_hash=to_hex(found.tx_hash) if found.tx_hash else None,
        stored_at=found.stored_at,
    )


class MirrorVerificationOut(BaseModel):
    consistent: bool
    cursor: int
    checked: int
    missing: list[IntPair]
    extra: list[IntPair]
    different: list[IntPair]


@router.get(
    "/mirror/verify",
    response_model=MirrorVerificationOut,
    summary="Check the SQL audit mirror against the chain, event by event (auditor token)",
)
def verify_audit_mirror(
    chain: ChainDep, mirror: MirrorDep, principal: PrincipalDep
) -> MirrorVerificationOut:
    if isinstance(principal, WalletPrincipal) or not principal.has(Role.AUDITOR):
        raise Forbidden("verification needs an auditor token")
    r = verify_mirror(chain=chain, mirror=mirror)
    return MirrorVerificationOut(
        consistent=r.consistent,
        cursor=r.cursor,
        checked=r.checked,
        missing=r.missing,
        extra=r.extra,
        different=r.different,
    )


class KeyAuditEntryOut(BaseModel):
    seq: int
    at: int
    actor: str
    action: str
    subject: str
    prev_hash: str
    hash: str


class KeyAuditVerificationOut(BaseModel):
    valid: bool
    chain_intact: bool
    entries: int
    first_broken: int | None
    anchors_checked: int
    anchors_mismatched: list[int]
    anchored_seq: int | None


class KeyAuditOut(BaseModel):
    entries: list[KeyAuditEntryOut]
    head_seq: int
    head_hash: str | None
    verification: KeyAuditVerificationOut | None = None


@router.get(
    "/keys",
    response_model=KeyAuditOut,
    summary="The key audit log: KEK and signer lifecycle, wrap/unwrap batches, signatures "
    "(auditor token); verify=true recomputes the hash chain against the on-chain anchors",
)
def key_audit(
    key_log: KeyAuditDep,
    chain: ChainDep,
    _auditor: AuditorDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT64, description="entries with seq > after")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    action: Annotated[str | None, Query(description="e.g. kek.rotate, sign")] = None,
    verify: Annotated[bool, Query(description="recompute the chain, compare anchors")] = False,
) -> KeyAuditOut:
    log = key_log
    head = log.head()
    verification = None
    if verify:
        anchors = chain.key_audit_anchors(key_audit_addresses(log, chain.hospital))
        v = verify_key_audit(log, anchors)
        verification = KeyAuditVerificationOut(
            valid=v.valid,
            chain_intact=v.chain_intact,
            entries=v.entries,
            first_broken=v.first_broken,
            anchors_checked=v.anchors_checked,
            anchors_mismatched=v.anchors_mismatched,
            anchored_seq=v.anchored_seq,
        )
    return KeyAuditOut(
        entries=[
            KeyAuditEntryOut(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                subject=e.subject,
                prev_hash=to_hex(e.prev_hash),
                hash=to_hex(e.hash),
            )
            for e in log.entries(after=after, limit=limit, action=action)
        ],
        head_seq=head.seq if head else 0,
        head_hash=to_hex(head.hash) if head else None,
        verification=verification,
    )
