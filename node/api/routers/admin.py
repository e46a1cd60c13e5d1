"""Node administration: API tokens (admin) and the hospital's clinician directory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from node.api.deps import AdminDep, HospitalDep, NodeDep
from node.api.schemas.common import Address
from node.auth.principal import Role

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
