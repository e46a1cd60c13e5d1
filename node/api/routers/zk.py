"""Zero-knowledge access (v2): credential issuance by hospitals (attributes from the
hospital's directory), the public credential tree, the reader classes a record's patient
consented to, anonymous reads with a proof instead of a wallet, and per-epoch reader counts
for auditors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from node.api.deps import (
    AuditorDep,
    ChainDep,
    DirectoryDep,
    HospitalDep,
    MetricsDep,
    OptionalZkDep,
)
from node.api.schemas.common import Hex32Param, parse_hex32, to_hex
from node.api.schemas.zk import (
    CredentialsIn,
    CredentialsOut,
    EpochReadersOut,
    IssuedOut,
    ReaderClassOut,
    ReadersOut,
    RecordAccessOut,
    RevokedOut,
    RevokeIn,
    RevokeMemberIn,
    RevokeMemberOut,
    SealedOut,
    TreeOut,
    ZkAccessOut,
    ZkInfoOut,
    ZkReadIn,
    ZkReadOut,
)
from node.consent.typed_data import category_hash
from node.exceptions import InvalidRequest, NotFound
from node.flows.issue_credentials import (
    IssueRequest,
    RevokedLeaf,
    issue_credentials,
    revoke_credential,
    revoke_member_credentials,
)
from node.zkaccess.service import ZkAccessService, ZkReadRequest, ZkReadResult
from zk.credentials import ROLES, roles_from_mask

router = APIRouter(prefix="/zk", tags=["zero-knowledge"])


async def get_zk(zk: OptionalZkDep) -> ZkAccessService:
    if zk is None:
        raise NotFound("zero-knowledge access is not enabled on this node")
    return zk


ZkDep = Annotated[ZkAccessService, Depends(get_zk)]

_DISABLED = {404: {"description": "zero-knowledge access is disabled on this node"}}
_HOSPITAL = {
    401: {"description": "no API token"},
    403: {"description": "not a hospital token"},
    **_DISABLED,
}
_AUDITOR = {
    401: {"description": "no API token"},
    403: {"description": "not an auditor token"},
    **_DISABLED,
}
_CHAIN = {503: {"description": "the chain node cannot be reached"}}


def _doc(*parts: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    merged: dict[int | str, dict[str, Any]] = {}
    for part in parts:
        merged.update(part)
    return merged


@router.get(
    "",
    response_model=ZkInfoOut,
    summary="Circuit, keys, contracts and what a proof commits to (anyone)",
    responses=_doc(_DISABLED, _CHAIN),
)
def info(zk: ZkDep) -> ZkInfoOut:
    zk.mirror.sync()
    k = zk.keys_info
    d = zk.gate.deployment
    return ZkInfoOut(
        circuit=k.circuit,
        circuit_hash=k.circuit_hash,
        key_kind=k.kind,
        public_inputs=list(k.public_inputs),
        verification_key=k.verification_key,
        credential_registry=d.credential_registry,
        zk_access_gate=zk.gate.gate_address,
        verifier=d.clinician_verifier,
        chain_id=zk.gate.chain_id,
        epoch_length=zk.gate.epoch_length(),
        root=str(zk.mirror.root),
        credentials=zk.mirror.size,
        max_proof_age=zk.max_proof_age,
        max_clock_skew=zk.max_clock_skew,
    )


@router.get(
    "/proving-key",
    summary="The circuit's proving key, for clinicians' provers (anyone)",
    response_class=FileResponse,
    responses=_doc({200: {"content": {"application/octet-stream": {}}}}, _DISABLED),
)
def proving_key(zk: ZkDep) -> FileResponse:
    k = zk.keys_info
    return FileResponse(
        k.proving_key_path,
        media_type="application/octet-stream",
        filename=f"{k.circuit}-{k.circuit_hash[:16]}.pk",
    )


@router.get(
    "/tree",
    response_model=TreeOut,
    summary="The whole credential tree: every leaf, the same answer for every caller (anyone)",
    description="Clinicians build their own Merkle proof from it: asking the node for one "
    "credential's path would tie the next anonymous read to that credential.",
    responses=_doc(_DISABLED, _CHAIN),
)
def tree(zk: ZkDep) -> TreeOut:
    snapshot = zk.mirror.snapshot()
    return TreeOut(
        root=str(snapshot.root),
        size=snapshot.size,
        depth=snapshot.depth,
        leaves=[str(leaf) for leaf in snapshot.leaves],
    )


@router.post(
    "/credentials",
    response_model=CredentialsOut,
    status_code=201,
    summary="Issue credentials to clinicians of this hospital's directory (hospital token)",
    description="The body carries identity commitments and clinician addresses only; the "
    "role and the licence expiry come from the directory (POST /clinicians) and the "
    "registry puts this hospital's member id in the leaf. Any other field is refused.",
    responses=_doc(
        _HOSPITAL,
        _CHAIN,
        {
            400: {
                "description": "clinician not in the directory, expired licence, no licence "
                "expiry or an unusable role; duplicate commitments"
            },
            409: {"description": "this credential is already issued"},
            422: {"description": "malformed body or an extra field (role, hospital_id, ...)"},
        },
    ),
)
def issue(
    body: CredentialsIn,
    directory: DirectoryDep,
    chain: ChainDep,
    zk: ZkDep,
    _caller: HospitalDep,
) -> CredentialsOut:
    issued = issue_credentials(
        [IssueRequest(int(c.identity_commitment), c.clinician) for c in body.credentials],
        directory=directory,
        chain=chain,
        gate=zk.gate,
        mirror=zk.mirror,
    )
    tx = issued[0].tx
    return CredentialsOut(
        credentials=[
            IssuedOut(
                clinician=i.clinician,
                identity_commitment=str(i.credential.identity_commitment),
                leaf=str(i.credential.leaf),
                index=i.credential.index,
                hospital_id=i.credential.hospital_id,
                role=ROLES[i.credential.role],
                licence_expiry=i.credential.expiry,
                root=str(i.root),
                tx_hash=to_hex(i.tx.tx_hash),
            )
            for i in issued
        ],
        root=str(issued[-1].root),
        tx_hash=to_hex(tx.tx_hash),
        block_number=tx.block_number,
    )


def _revoked(r: RevokedLeaf) -> RevokedOut:
    return RevokedOut(
        leaf=str(r.credential.leaf),
        index=r.credential.index,
        hospital_id=r.credential.hospital_id,
        root=str(r.root),
        tx_hash=to_hex(r.tx.tx_hash),
        block_number=r.tx.block_number,
    )


@router.post(
    "/credentials/revoke",
    response_model=RevokedOut,
    summary="Revoke a credential this hospital issued, or one of a removed member (hospital token)",
    description="The node finds the leaf's preimage and Merkle proof in its mirror of the "
    "tree. Every root before the revocation stops being valid.",
    responses=_doc(
        _HOSPITAL,
        _CHAIN,
        {
            404: {"description": "no live credential has this leaf"},
            422: {"description": "malformed body"},
        },
    ),
)
def revoke(body: RevokeIn, chain: ChainDep, zk: ZkDep, _caller: HospitalDep) -> RevokedOut:
    return _revoked(revoke_credential(int(body.leaf), chain=chain, gate=zk.gate, mirror=zk.mirror))


@router.post(
    "/credentials/revoke-member",
    response_model=RevokeMemberOut,
    summary="Revoke every live credential of a hospital removed from the consortium "
    "(hospital token)",
    responses=_doc(
        _HOSPITAL,
        _CHAIN,
        {
            404: {"description": "the address never was a consortium member"},
            422: {"description": "malformed body"},
        },
    ),
)
def revoke_member(
    body: RevokeMemberIn, chain: ChainDep, zk: ZkDep, _caller: HospitalDep
) -> RevokeMemberOut:
    revoked = revoke_member_credentials(body.hospital, chain=chain, gate=zk.gate, mirror=zk.mirror)
    return RevokeMemberOut(
        hospital=body.hospital,
        hospital_id=chain.member_id(body.hospital),
        revoked=[_revoked(r) for r in revoked],
    )


@router.get(
    "/records/{record_id}/access",
    response_model=RecordAccessOut,
    summary="What a proof for this record must satisfy: the category policy and the "
    "patient's live reader-class consents covering the record (anyone)",
    description="The patient's address is returned because the proof's scope binds it; the "
    "chain already links the record id to the patient (`RecordAnchored`). A clinician picks a "
    "class its credential belongs to (role in `mask`, hospital 0 or its own) and proves with "
    "that `mask`.",
    responses=_doc(
        _DISABLED,
        _CHAIN,
        {
            400: {"description": "malformed record id"},
            404: {"description": "no such record, or zero-knowledge access is disabled"},
            410: {"description": "record erased"},
        },
    ),
)
def record_access(record_id: Hex32Param, zk: ZkDep) -> RecordAccessOut:
    access = zk.record_access(parse_hex32("record_id", record_id))
    return RecordAccessOut(
        record_id=to_hex(access.record_id),
        patient=access.patient,
        category=access.category,
        category_hash=to_hex(category_hash(access.category)),
        policy=access.policy,
        policy_roles=roles_from_mask(access.policy),
        classes=[
            ReaderClassOut(
                scope_kind=c.scope_kind,
                hospital=c.hospital,
                roles=roles_from_mask(c.roles),
                roles_mask=c.roles,
                mask=c.mask,
                expires_at=c.expires_at,
            )
            for c in access.classes
        ],
    )


@router.post(
    "/records/{record_id}/read",
    response_model=ZkReadOut,
    summary="Read a record with a ClinicianAccess proof instead of a wallet (anyone)",
    description=(
        "The node fills the patient and the category from its index, checks the patient's "
        "reader-class consent (403), the consortium's category policy (403), the time "
        "window (400), the proof off-chain (422), the root (403) and replay (409), then has "
        "ZkAccessGate verify and record it on-chain (batched) and returns the record "
        "encrypted to the X25519 key that the proof binds (the signal)."
    ),
    responses=_doc(
        _CHAIN,
        {
            400: {"description": "proof too old or from the future; malformed record id"},
            403: {
                "description": "no live consent for the class, the policy allows none of "
                "its roles, or an unknown / revoked root"
            },
            404: {"description": "no such record, or zero-knowledge access is disabled"},
            409: {"description": "this request (record, signal) was already served"},
            410: {"description": "record erased"},
            422: {"description": "malformed body, or the proof does not verify"},
        },
    ),
)
def zk_read(record_id: Hex32Param, body: ZkReadIn, zk: ZkDep, metrics: MetricsDep) -> ZkReadOut:
    try:
        result = _zk_read(record_id, body, zk)
    except Exception:
        metrics.count("emr_zk_proofs_total", result="refused")
        raise
    metrics.count("emr_zk_proofs_total", result="accepted")
    return ZkReadOut(
        record_id=to_hex(result.record_id),
        category=result.category,
        content_type=result.content_type,
        sealed=SealedOut(**result.box.to_json()),
        tx_hash=to_hex(result.tx.tx_hash),
        block_number=result.tx.block_number,
    )


def _zk_read(record_id: str, body: ZkReadIn, zk: ZkAccessService) -> ZkReadResult:
    return zk.read(
        ZkReadRequest(
            record_id=parse_hex32("record_id", record_id),
            root=int(body.root),
            current_time=body.current_time,
            signal=parse_hex32("signal", body.signal),
            epoch_nullifier=int(body.epoch_nullifier),
            scope_kind=body.scope_kind,
            class_hospital=body.class_hospital,
            class_roles=body.class_roles,
            proof=tuple(int(w) for w in body.proof),
        )
    )


@router.get(
    "/accesses",
    response_model=list[ZkAccessOut],
    summary="Anonymous accesses recorded by ZkAccessGate (auditor token)",
    description="Every accepted proof-based read, from the chain: record, patient, epoch, "
    "epoch nullifier, category, the one-time key the record was sealed to, the relaying "
    "node. Nothing names the reader.",
    responses=_doc(_AUDITOR, _CHAIN, {400: {"description": "malformed record id"}}),
)
def accesses(
    zk: ZkDep, _caller: AuditorDep, record_id: Annotated[Hex32Param | None, Query()] = None
) -> list[ZkAccessOut]:
    record = parse_hex32("record_id", record_id) if record_id is not None else None
    return [
        ZkAccessOut(
            record_id=to_hex(e.record_id),
            patient=e.patient,
            epoch=e.epoch,
            epoch_nullifier=str(e.epoch_nullifier),
            category=to_hex(e.category),
            signal=to_hex(e.signal),
            relayer=e.relayer,
            tx_hash=to_hex(e.tx_hash),
            block_number=e.block_number,
        )
        for e in zk.accesses(record)
    ]


@router.get(
    "/accesses/readers",
    response_model=ReadersOut,
    summary="Per epoch: how many anonymous reads of a record, by how many distinct "
    "credentials (auditor token)",
    description="Distinct readers are distinct epoch nullifiers, Poseidon(scope, secret): "
    "the same for one credential, record and epoch, unlinkable across records and epochs. "
    "Privacy trade-off: an auditor learns that the same (unknown) credential read a record "
    "twice in an epoch, not who it is; a short epoch makes the count finer and the "
    "repeated-reader signal stronger.",
    responses=_doc(
        _AUDITOR,
        _CHAIN,
        {
            400: {"description": "malformed record id, or from after to"},
            422: {"description": "record_id missing, or from / to not unix times"},
        },
    ),
)
def readers(
    zk: ZkDep,
    _caller: AuditorDep,
    record_id: Annotated[Hex32Param, Query()],
    from_: Annotated[int | None, Query(alias="from", ge=0, lt=2**40)] = None,
    to: Annotated[int | None, Query(ge=0, lt=2**40)] = None,
) -> ReadersOut:
    record = parse_hex32("record_id", record_id)
    if from_ is not None and to is not None and from_ > to:
        raise InvalidRequest("from must not be after to")
    length, epochs = zk.readers(record, from_, to)
    return ReadersOut(
        record_id=to_hex(record),
        epoch_length=length,
        epochs=[
            EpochReadersOut(
                epoch=e.epoch,
                start=e.epoch * length,
                accesses=e.accesses,
                distinct_readers=e.distinct_readers,
            )
            for e in epochs
        ],
    )
