"""The audit trail, read from the chain's logs, and record verification against anchors."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from node.api.deps import (
    AuditorDep,
    BlobsDep,
    ChainDep,
    DirectoryDep,
    IndexDep,
    KeyAuditDep,
    KeysDep,
    MirrorDep,
    OptionalZkDep,
    PrincipalDep,
    require,
)
from node.api.schemas.common import (
    MAX_INT64,
    AddressParam,
    Hex32,
    Hex32Param,
    IntPair,
    parse_address,
    parse_hex32,
    to_hex,
)
from node.api.schemas.consent import ReasonDisclosureOut, StoredReasonOut
from node.audit import csv_export
from node.audit.csv_export import CSV_COLUMNS, MAX_CSV_ROWS
from node.audit.key_log import verify_key_audit
from node.audit.mirror import verify_mirror
from node.audit.stats import audit_stats
from node.auth.principal import Principal, Role, TokenPrincipal, WalletPrincipal
from node.chain.abc import ChainClientAPI
from node.chain.models import AuditEvent
from node.directory import HospitalDirectory
from node.exceptions import Forbidden, NotFound
from node.flows.anchor_key_audit import key_audit_addresses
from node.flows.audit_trail import AuditEventName, AuditFilter, find_audit_events, verify_record
from node.flows.break_glass import disclose, disclose_event
from node.flows.verify_receipt import AnchorClaim, ReceiptCheck, verify_receipt
from node.zkaccess.service import ZkAccessService
from storage.abc import AuditMirrorAPI

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


_AUDIT_CALLERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no credential, or an unknown, expired or revoked one"},
    403: {
        "description": "neither an auditor (or admin) token nor a wallet session, or a "
        "wallet asking for another patient's trail"
    },
    422: {"description": "a malformed filter (address, record id, time, event, paging)"},
    503: {"description": "chain unreachable"},
}
_TOTAL_COUNT = {
    "X-Total-Count": {
        "description": "events matching the filters before paging (limit, offset)",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _trail_patient(principal: Principal, patient: str | None) -> str | None:
    """The patient filter a caller may ask for: auditor and admin tokens any patient's (or
    every) trail, a wallet only its own (its address becomes the filter)."""
    wanted = parse_address("patient", patient) if patient is not None else None
    if isinstance(principal, WalletPrincipal):
        if wanted not in (None, principal.address):
            raise Forbidden("a wallet may read only its own audit trail")
        return principal.address
    if not principal.has(Role.AUDITOR):
        raise Forbidden("the audit trail needs an auditor token")
    return wanted


def _event_out(e: AuditEvent, directory: HospitalDirectory) -> AuditEventOut:
    disclosure = disclose_event(e, reasons=directory)
    return AuditEventOut(
        event=e.event,
        contract=e.contract,
        block_number=e.block_number,
        timestamp=e.timestamp,
        tx_hash=to_hex(e.tx_hash),
        log_index=e.log_index,
        args={k: _jsonable(v) for k, v in e.args.items()},
        reason=disclosure.commitment.reason if disclosure else None,
        disclosure=ReasonDisclosureOut.of(disclosure) if disclosure else None,
    )


PatientQuery = Annotated[AddressParam | None, Query()]
RecordQuery = Annotated[Hex32Param | None, Query()]
ActorQuery = Annotated[
    AddressParam | None, Query(description="clinician, grantee or hospital address")
]
SinceQuery = Annotated[int | None, Query(ge=0, le=MAX_INT64, description="unix seconds, inclusive")]
UntilQuery = Annotated[int | None, Query(ge=0, le=MAX_INT64, description="unix seconds, inclusive")]
EventQuery = Annotated[
    AuditEventName | None,
    Query(description="only events of this name (ZkAccessGranted: anonymous reads)"),
]
SourceQuery = Annotated[
    Literal["chain", "mirror"],
    Query(
        description="chain: the logs themselves; mirror: the SQL copy (fast, may lag; "
        "without anonymous reads)"
    ),
]


def audit_filter(
    principal: PrincipalDep,
    patient: PatientQuery = None,
    record_id: RecordQuery = None,
    actor: ActorQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    event: EventQuery = None,
    source: SourceQuery = "chain",
) -> AuditFilter:
    return AuditFilter(
        patient=_trail_patient(principal, patient),
        record_id=parse_hex32("record_id", record_id) if record_id is not None else None,
        actor=parse_address("actor", actor) if actor is not None else None,
        since=since,
        until=until,
        event=event,
        source=source,
    )


AuditFilterDep = Annotated[AuditFilter, Depends(audit_filter)]


def _trail(
    f: AuditFilter, chain: ChainClientAPI, mirror: AuditMirrorAPI, zk: ZkAccessService | None
) -> list[AuditEvent]:
    return find_audit_events(f, chain=chain, mirror=mirror, zk_gate=zk.gate if zk else None)


@router.get(
    "/events",
    response_model=list[AuditEventOut],
    summary="Audit events by patient, record, actor, event, time, a page at a time, in "
    "chain order (auditor; a wallet: its own)",
    responses={200: {"headers": _TOTAL_COUNT}, **_AUDIT_CALLERS},
)
def events(
    chain: ChainDep,
    mirror: MirrorDep,
    directory: DirectoryDep,
    zk: OptionalZkDep,
    f: AuditFilterDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000, description="events in this page")] = 1000,
    offset: Annotated[
        int, Query(ge=0, le=MAX_INT64, description="matching events to skip (oldest first)")
    ] = 0,
) -> list[AuditEventOut]:
    found = _trail(f, chain, mirror, zk)
    response.headers["X-Total-Count"] = str(len(found))
    return [_event_out(e, directory) for e in found[offset : offset + limit]]


@router.get(
    "/events/csv",
    response_class=PlainTextResponse,
    summary="The events GET /audit/events lists for the same filters, every page, as a CSV "
    "download (auditor; a wallet: its own)",
    description="Columns: " + ",".join(CSV_COLUMNS) + ". Cells a spreadsheet would take "
    "for a formula (beginning with = + - @, tab or carriage return) are prefixed with '. "
    f"At most {MAX_CSV_ROWS} rows: narrow the filters for more.",
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "header row, then one row per event in chain order",
        },
        **_AUDIT_CALLERS,
        422: {
            "description": "a malformed filter, or more than "
            f"{MAX_CSV_ROWS} matching events (narrow the filters)"
        },
    },
)
def events_csv(
    chain: ChainDep,
    mirror: MirrorDep,
    directory: DirectoryDep,
    zk: OptionalZkDep,
    f: AuditFilterDep,
) -> Response:
    found = _trail(f, chain, mirror, zk)
    if len(found) > csv_export.MAX_CSV_ROWS:
        raise RequestValidationError(
            [
                {
                    "loc": ("query",),
                    "msg": f"{len(found)} events match, more than {csv_export.MAX_CSV_ROWS} "
                    "for one file: narrow the filters (patient, record, actor, event, time)",
                }
            ]
        )
    body = csv_export.audit_csv(_event_out(e, directory).model_dump() for e in found)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-events.csv"'},
    )


class DayStatsOut(BaseModel):
    day: str = Field(description="UTC date, YYYY-MM-DD", examples=["2026-12-07"])
    reads: int = Field(description="granted reads (AccessRecorded, granted)")
    denied: int = Field(description="refused reads (AccessRecorded, not granted)")
    break_glass: int = Field(description="break-glass openings (BreakGlassOpened)")


class HospitalStatsOut(BaseModel):
    hospital: str = Field(description="the member hospital's address")
    name: str | None = Field(description="its consortium name; null: not a member now")
    reads: int
    denied: int
    break_glass: int


class AuditStatsOut(BaseModel):
    days: list[DayStatsOut] = Field(description="days with a read, denial or break-glass")
    hospitals: list[HospitalStatsOut]
    anonymous_reads: int = Field(description="zero-knowledge reads (ZkAccessGranted)")


@router.get(
    "/stats",
    response_model=AuditStatsOut,
    summary="Reads, denied reads and break-glass per UTC day and per hospital, and anonymous "
    "reads, over the events GET /audit/events lists (auditor; a wallet: its own)",
    responses=_AUDIT_CALLERS,
)
def stats(
    chain: ChainDep,
    mirror: MirrorDep,
    principal: PrincipalDep,
    zk: OptionalZkDep,
    patient: PatientQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> AuditStatsOut:
    f = AuditFilter(patient=_trail_patient(principal, patient), since=since, until=until)
    s = audit_stats(_trail(f, chain, mirror, zk))
    names = dict(chain.members()) if s.hospitals else {}
    return AuditStatsOut(
        days=[DayStatsOut(day=d, **asdict(c)) for d, c in s.days.items()],
        hospitals=[
            HospitalStatsOut(hospital=h, name=names.get(h), **asdict(c))
            for h, c in s.hospitals.items()
        ],
        anonymous_reads=s.anonymous_reads,
    )


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


# -- receipts from any hospital, checked against the chain alone ---------------------

# Any token but a wallet's: the answer holds nothing the chain does not publish.
ReceiptVerifierDep = Annotated[TokenPrincipal, require(Role.AUDITOR, Role.HOSPITAL)]


class ReceiptIn(BaseModel):
    """An anchoring receipt as ``GET /records/{record_id}/receipt`` answers it at the node
    that holds the record (any hospital's). Other fields of that answer (status,
    block_number, anchored_at, patient) are ignored: the answer reports the chain's."""

    model_config = ConfigDict(extra="ignore")

    record_id: Hex32
    content_hash: Hex32 = Field(description="the record version's content hash (the leaf's)")
    previous_id: Hex32 | None = Field(None, description="its predecessor; null: a first version")
    batch_id: int = Field(ge=0, lt=2**63, strict=True)  # JSON true is not batch 1
    root: Hex32
    leaf: Hex32
    proof: list[Hex32] = Field(max_length=32, description="sibling hashes, leaf to root")
    tx_hash: Hex32 | None = Field(None, description="the anchoring transaction, if claimed")


class ReceiptChecksOut(BaseModel):
    root_on_chain: bool = Field(description="batch batch_id is on-chain with this root")
    proof_reaches_root: bool = Field(description="the proof takes the leaf to the root")
    anchored_in_batch: bool = Field(
        description="the record id's RecordAnchored event names batch batch_id"
    )
    tx_hash_matches: bool | None = Field(
        description="that event is in transaction tx_hash; null: the receipt names none"
    )
    leaf_matches_record: bool = Field(
        description="the leaf is the hash of (record id, the event's patient, content_hash, "
        "previous_id)"
    )
    proof_valid_on_chain: bool = Field(
        description="RecordRegistry.verifyRecord accepts the record version and the proof"
    )


class ReceiptVerificationOut(BaseModel):
    valid: bool = Field(description="every check passed (tx_hash_matches: unless null)")
    failed: list[ReceiptCheck] = Field(description="the checks that failed")
    checks: ReceiptChecksOut
    record_id: str
    batch_id: int
    patient: str | None = Field(description="as the record's RecordAnchored event names it")
    hospital: str | None = Field(description="the address that anchored the batch")
    hospital_member_id: int | None = Field(description="its consortium member id then")
    hospital_name: str | None = Field(description="its consortium name; null: not a member now")
    anchored_at: int | None = Field(description="the batch's block time (unix seconds)")
    anchor_tx: str | None = Field(description="the transaction of the RecordAnchored event")
    block_number: int | None = Field(description="the block of that transaction")
    erased: bool = Field(description="the record carries an on-chain RecordErased tombstone")


def _claim(body: ReceiptIn) -> AnchorClaim:
    def b32(value: str) -> bytes:
        return bytes.fromhex(value[2:])

    return AnchorClaim(
        record_id=b32(body.record_id),
        content_hash=b32(body.content_hash),
        batch_id=body.batch_id,
        root=b32(body.root),
        leaf=b32(body.leaf),
        proof=tuple(b32(p) for p in body.proof),
        previous_id=b32(body.previous_id) if body.previous_id is not None else None,
        tx_hash=b32(body.tx_hash) if body.tx_hash is not None else None,
    )


@router.post(
    "/receipts/verify",
    response_model=ReceiptVerificationOut,
    summary="Verify an anchoring receipt any member's node issued, from the chain alone "
    "(auditor or hospital token)",
    description="Needs no copy of the record: the batch root, the record's RecordAnchored "
    "event and RecordRegistry.verifyRecord decide. A receipt that does not verify is a 200 "
    "with valid false and the failing checks named.",
    responses={
        200: {"description": "the checks; valid false names the failed ones in failed"},
        403: {"description": "a wallet session (this route is for API tokens)"},
        422: {
            "description": "not a receipt: a missing or malformed field (a pending receipt "
            "has no batch), a batch id past 2^63, more than 32 proof hashes"
        },
        503: {"description": "chain unreachable"},
    },
)
def verify_anchor_receipt(
    body: ReceiptIn, chain: ChainDep, _caller: ReceiptVerifierDep
) -> ReceiptVerificationOut:
    v = verify_receipt(_claim(body), chain=chain)
    return ReceiptVerificationOut(
        valid=v.valid,
        failed=v.failed,
        checks=ReceiptChecksOut(
            root_on_chain=v.root_on_chain,
            proof_reaches_root=v.proof_reaches_root,
            anchored_in_batch=v.anchored_in_batch,
            tx_hash_matches=v.tx_hash_matches,
            leaf_matches_record=v.leaf_matches_record,
            proof_valid_on_chain=v.proof_valid_on_chain,
        ),
        record_id=body.record_id,
        batch_id=body.batch_id,
        patient=v.patient,
        hospital=v.hospital,
        hospital_member_id=v.batch.member_id if v.batch is not None else None,
        hospital_name=v.hospital_name,
        anchored_at=v.batch.timestamp if v.batch is not None else None,
        anchor_tx=to_hex(v.event.tx_hash) if v.event is not None else None,
        block_number=v.event.block_number if v.event is not None else None,
        erased=v.erased,
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
