"""Node administration: API tokens and KEK rotation (admin), and the hospital's clinician
directory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from node.api.deps import AdminDep, HospitalDep, NodeDep
from node.api.schemas.common import Address
from node.audit.key_log import acting_as
from node.auth.principal import Role
from node.flows.rotate_keys import rotate, rotation_status
from node.flows.rotate_signer import start_signer_rotation

router = APIRouter(tags=["admin"])


class TokenIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Role


class TokenOut(BaseModel):
    name: str
    role: Role
    token: str = Field(description="shown once; the node keeps only its hash")


class ClinicianIn(BaseModel):
    address: Address
    role: Annotated[str, Field(min_length=1, max_length=64)]
    licence_expiry: int | None = Field(
        None,
        ge=1,
        lt=2**40,
        description="unix seconds; the node writes it into the clinician's zero-knowledge "
        "credentials (with the role), none are issued without it",
    )


class ClinicianOut(BaseModel):
    address: str
    role: str
    added_at: int
    licence_expiry: int | None


@router.post(
    "/admin/tokens", response_model=TokenOut, status_code=201, summary="Create an API token (admin)"
)
def create_token(body: TokenIn, node: NodeDep, _admin: AdminDep) -> TokenOut:
    return TokenOut(
        name=body.name, role=body.role, token=node.auth.create_token(body.name, body.role)
    )


class KeyRotationOut(BaseModel):
    version: int = Field(description="the new current KEK version")


class KeyStatusOut(BaseModel):
    current: int = Field(description="KEK version that wraps new data keys")
    usage: dict[int, int] = Field(description="records per KEK version")
    pending: int = Field(description="records still to re-wrap with the current KEK")
    live: list[int] = Field(description="KEK versions the key store holds")
    retired: list[int] = Field(description="KEK versions destroyed once nothing used them")
    unreadable: int = Field(description="records at a KEK version no longer held (0)")
    rewrap_error: str | None = Field(description="the re-wrap worker's last error, if any")


@router.post(
    "/admin/keys/rotate",
    response_model=KeyRotationOut,
    summary="Rotate the KEK: new records use a new version, old keys are re-wrapped (admin)",
)
def rotate_keys(node: NodeDep, admin: AdminDep) -> KeyRotationOut:
    with acting_as(f"token:{admin.name}"):
        version = rotate(node.keys)
    node.rewrap_worker.wake()
    return KeyRotationOut(version=version)


class SignerRotationOut(BaseModel):
    old_address: str
    new_address: str
    proposal_id: int | None = Field(description="the Consortium Rotate proposal")
    completed: bool = Field(
        description="true: the node signs as new_address now; false: waiting for the other "
        "members' votes (the node finishes by itself once the proposal executes)"
    )


@router.post(
    "/admin/keys/signer/rotate",
    response_model=SignerRotationOut,
    summary="Rotate the node's signing key: a new key, moved into the hospital's Consortium "
    "membership by a governance vote (admin)",
)
def rotate_signer(node: NodeDep, admin: AdminDep) -> SignerRotationOut:
    with acting_as(f"token:{admin.name}"):
        r = start_signer_rotation(node.keys, node.chain)
    return SignerRotationOut(
        old_address=r.old_address,
        new_address=r.new_address,
        proposal_id=r.proposal_id,
        completed=r.completed,
    )


@router.get(
    "/admin/keys",
    response_model=KeyStatusOut,
    summary="KEK rotation status: current version, records per version, backlog (admin)",
)
def key_status(node: NodeDep, _admin: AdminDep) -> KeyStatusOut:
    s = rotation_status(node.keys, node.index)
    return KeyStatusOut(
        current=s.current,
        usage=s.usage,
        pending=s.pending,
        live=s.live,
        retired=s.retired,
        unreadable=s.unreadable,
        rewrap_error=node.rewrap_worker.last_error,
    )


@router.post(
    "/clinicians",
    response_model=ClinicianOut,
    status_code=201,
    summary="Register a clinician: hospital-wide consents then cover them, and their "
    "credentials carry this role and licence expiry (hospital)",
    responses={
        401: {"description": "no API token"},
        403: {"description": "not a hospital token"},
        422: {"description": "malformed body (address, role, licence_expiry)"},
    },
)
def add_clinician(body: ClinicianIn, node: NodeDep, _caller: HospitalDep) -> ClinicianOut:
    c = node.directory.add_clinician(body.address, body.role, body.licence_expiry)
    return ClinicianOut(
        address=c.address, role=c.role, added_at=c.added_at, licence_expiry=c.licence_expiry
    )


@router.get(
    "/clinicians",
    response_model=list[ClinicianOut],
    summary="List this hospital's clinicians (hospital)",
)
def list_clinicians(node: NodeDep, _caller: HospitalDep) -> list[ClinicianOut]:
    return [
        ClinicianOut(
            address=c.address, role=c.role, added_at=c.added_at, licence_expiry=c.licence_expiry
        )
        for c in node.directory.clinicians()
    ]
