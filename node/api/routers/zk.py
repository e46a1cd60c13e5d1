"""Zero-knowledge access: credential registration by hospitals, Merkle paths and proving keys
for clinicians, category policies, and anonymous reads with a proof instead of a wallet."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from node.api.deps import AuditorDep, HospitalDep, NodeDep
from node.api.schemas.common import parse_hex32, to_hex
from node.api.schemas.zk import (
    CredentialsIn,
    CredentialsOut,
    PathOut,
    PolicyIn,
    PolicyOut,
    RecordPolicyOut,
    RevokeIn,
    RevokeOut,
    SealedOut,
    ZkAccessOut,
    ZkInfoOut,
    ZkReadIn,
    ZkReadOut,
)
from node.consent.typed_data import category_hash
from node.exceptions import Forbidden, InvalidRequest, NotFound
from node.wiring import Node
from node.zkaccess.service import ZkAccessService, ZkReadRequest
from zk.credentials import roles_from_mask, roles_mask
from zk.exceptions import InputError

router = APIRouter(prefix="/zk", tags=["zero-knowledge"])


def _service(node: Node) -> ZkAccessService:
    if node.zk is None:
        raise NotFound("zero-knowledge access is not enabled on this node")
    return node.zk


def _role_names(mask: int) -> list[str]:
    return roles_from_mask(mask)


@router.get("", response_model=ZkInfoOut, summary="Circuit, keys and contracts (anyone)")
def info(node: NodeDep) -> ZkInfoOut:
    zk = _service(node)
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
        zk_access_gate=d.zk_access_gate,
        verifier=d.clinician_verifier,
        root=str(zk.mirror.root),
        credentials=zk.mirror.size,
        max_proof_age=zk.max_proof_age,
        max_clock_skew=zk.max_clock_skew,
    )


@router.get(
    "/proving-key",
    summary="The circuit's proving key, for clinicians' provers (anyone)",
    response_class=FileResponse,
)
def proving_key(node: NodeDep) -> FileResponse:
    k = _service(node).keys_info
    return FileResponse(
        k.proving_key_path,
        media_type="application/octet-stream",
        filename=f"{k.circuit}-{k.circuit_hash[:16]}.pk",
    )


@router.post(
    "/credentials",
    response_model=CredentialsOut,
    status_code=201,
    summary="Register clinician credential commitments (hospital token)",
)
def add_credentials(body: CredentialsIn, node: NodeDep, _caller: HospitalDep) -> CredentialsOut:
    zk = _service(node)
    commitments = [int(c) for c in body.commitments]
    if 0 in commitments:
        raise InvalidRequest("commitments: 0 is the empty leaf")
    if len(set(commitments)) != len(commitments):
        raise InvalidRequest("commitments: duplicates in the request")
    zk.mirror.sync()
    for c in commitments:
        if zk.mirror.issuer(c) is not None:
            raise InvalidRequest("commitments: already registered")
    tx = zk.gate.add_credentials(commitments)
    zk.mirror.sync()
    indices = [zk.mirror.path(c)[0] for c in commitments]
    return CredentialsOut(
        tx_hash=to_hex(tx.tx_hash),
        block_number=tx.block_number,
        root=str(zk.mirror.root),
        indices=indices,
    )


@router.post(
    "/credentials/revoke",
    response_model=RevokeOut,
    summary="Revoke a credential this hospital registered (hospital token)",
)
def revoke_credential(body: RevokeIn, node: NodeDep, _caller: HospitalDep) -> RevokeOut:
    zk = _service(node)
    commitment = int(body.commitment)
    _index, path = zk.mirror.path(commitment)  # syncs; 404 when unknown or already revoked
    if zk.mirror.issuer(commitment) != node.hospital:
        raise Forbidden("only the hospital that registered a credential may revoke it")
    tx = zk.gate.revoke_credential(commitment, path.siblings, path.indices)
    zk.mirror.sync()
    return RevokeOut(
        tx_hash=to_hex(tx.tx_hash), block_number=tx.block_number, root=str(zk.mirror.root)
    )


@router.get(
    "/credentials/{commitment}/path",
    response_model=PathOut,
    summary="Merkle path of a credential commitment (anyone: commitments are public)",
)
def credential_path(commitment: str, node: NodeDep) -> PathOut:
    zk = _service(node)
    try:
        value = int(commitment, 16) if commitment.startswith("0x") else int(commitment)
    except ValueError:
        raise InvalidRequest("commitment: not a decimal or 0x-hex number") from None
    index, path = zk.mirror.path(value)
    return PathOut(
        commitment=str(value),
        index=index,
        root=str(zk.mirror.root),
        siblings=[str(s) for s in path.siblings],
        path_indices=list(path.indices),
    )


@router.put(
    "/policies/{category}",
    response_model=PolicyOut,
    summary="Set which clinician roles may read a category with a proof (hospital token)",
)
def set_policy(category: str, body: PolicyIn, node: NodeDep, _caller: HospitalDep) -> PolicyOut:
    zk = _service(node)
    try:
        mask = roles_mask(body.roles)
    except InputError as err:
        raise InvalidRequest(f"roles: {err}") from None
    tx = zk.gate.set_category_policy(category_hash(category), mask)
    return PolicyOut(
        category=category, allowed_roles=mask, roles=_role_names(mask), tx_hash=to_hex(tx.tx_hash)
    )


@router.get("/policies/{category}", response_model=PolicyOut, summary="A category's policy")
def get_policy(category: str, node: NodeDep) -> PolicyOut:
    mask = _service(node).gate.category_policy(category_hash(category))
    return PolicyOut(category=category, allowed_roles=mask, roles=_role_names(mask))


@router.get(
    "/records/{record_id}/policy",
    response_model=RecordPolicyOut,
    summary="The category and roles policy a proof for this record must satisfy (anyone)",
)
def record_policy(record_id: str, node: NodeDep) -> RecordPolicyOut:
    zk = _service(node)
    row = node.index.get_record(parse_hex32("record_id", record_id))
    mask = zk.gate.category_policy(category_hash(row.category))
    return RecordPolicyOut(
        record_id=to_hex(row.record_id),
        category=row.category,
        allowed_roles=mask,
        roles=_role_names(mask),
    )


@router.post(
    "/records/{record_id}/read",
    response_model=ZkReadOut,
    summary="Read a record with a ClinicianAccess proof instead of a wallet (anyone)",
    description=(
        "The node verifies the proof off-chain, has ZkAccessGate verify and record it "
        "on-chain (batched), then returns the record encrypted to the X25519 key that the "
        "proof's signal binds. 422 when the proof does not verify, 409 for a used "
        "nullifier, 403 for an unknown or revoked root or a category without a policy."
    ),
)
def zk_read(record_id: str, body: ZkReadIn, node: NodeDep) -> ZkReadOut:
    zk = _service(node)
    result = zk.read(
        ZkReadRequest(
            record_id=parse_hex32("record_id", record_id),
            root=int(body.root),
            current_time=body.current_time,
            signal=parse_hex32("signal", body.signal),
            nullifier_hash=int(body.nullifier_hash),
            proof=tuple(int(w) for w in body.proof),
        )
    )
    return ZkReadOut(
        record_id=to_hex(result.record_id),
        category=result.category,
        content_type=result.content_type,
        sealed=SealedOut(**result.box.to_json()),
        tx_hash=to_hex(result.tx.tx_hash),
        block_number=result.tx.block_number,
    )


@router.get(
    "/accesses",
    response_model=list[ZkAccessOut],
    summary="Anonymous accesses recorded by ZkAccessGate (auditor token)",
    description="Every accepted proof-based read, from the chain: record, nullifier, policy "
    "category, the one-time key the record was sealed to, and the relaying node.",
)
def accesses(node: NodeDep, _caller: AuditorDep, record_id: str | None = None) -> list[ZkAccessOut]:
    zk = _service(node)
    record = parse_hex32("record_id", record_id) if record_id is not None else None
    return [
        ZkAccessOut(
            record_id=to_hex(e.record_id),
            nullifier_hash=str(e.nullifier_hash),
            category=to_hex(e.category),
            signal=to_hex(e.signal),
            root=str(e.root),
            relayer=e.relayer,
            tx_hash=to_hex(e.tx_hash),
            block_number=e.block_number,
        )
        for e in zk.gate.access_events(record_id=record)
    ]
