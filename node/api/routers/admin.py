"""Node administration: API tokens and KEK rotation (admin), and the hospital's clinician
directory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from node.api.deps import AdminDep, HospitalDep, NodeDep
from node.api.schemas.common import Address
from node.auth.principal import Role
from node.flows.rotate_keys import rotate, rotation_status

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


class ClinicianOut(BaseModel):
    address: str
    role: str
    added_at: int


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
def rotate_keys(node: NodeDep, _admin: AdminDep) -> KeyRotationOut:
    version = rotate(node.keys)
    node.rewrap_worker.wake()
    return KeyRotationOut(version=version)


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
    summary="Register a clinician: hospital-wide consents then cover them (hospital)",
)
def add_clinician(body: ClinicianIn, node: NodeDep, _caller: HospitalDep) -> ClinicianOut:
    c = node.directory.add_clinician(body.address, body.role)
    return ClinicianOut(address=c.address, role=c.role, added_at=c.added_at)


@router.get(
    "/clinicians",
    response_model=list[ClinicianOut],
    summary="List this hospital's clinicians (hospital)",
)
def list_clinicians(node: NodeDep, _caller: HospitalDep) -> list[ClinicianOut]:
    return [
        ClinicianOut(address=c.address, role=c.role, added_at=c.added_at)
        for c in node.directory.clinicians()
    ]
