"""Node administration: API tokens and KEK rotation (admin), and the hospital's clinician
directory."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from node.api.deps import (
    AdminDep,
    AuthDep,
    BackgroundDep,
    ChainDep,
    DirectoryDep,
    HospitalDep,
    IndexDep,
    KeysDep,
    PrincipalDep,
    SettingsDep,
)
from node.api.schemas.common import REASON_PATTERN, Address, JsonBody
from node.audit.key_log import acting_as
from node.auth.principal import Role
from node.auth.store import TOKEN_ID_PATTERN, TokenInfo
from node.directory import Clinician
from node.flows.rotate_keys import rotate, rotation_status
from node.flows.rotate_signer import start_signer_rotation

router = APIRouter(tags=["admin"])
log = logging.getLogger(__name__)


class TokenIn(JsonBody):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Role
    expires_in: int | None = Field(
        None,
        ge=1,
        le=10 * 365 * 86400,
        description="seconds until the token expires; default api.token_ttl_days (if that "
        "is 0, the token lives until revoked)",
    )


class TokenOut(BaseModel):
    id: str = Field(description="public id: list and revoke the token by it")
    name: str
    role: Role
    expires_at: int | None = Field(description="unix seconds; null: until revoked")
    token: str = Field(description="shown once; the node keeps only its hash")


class TokenInfoOut(BaseModel):
    id: str = Field(pattern=TOKEN_ID_PATTERN, description="public id")
    name: str
    role: Role
    created_at: int = Field(description="unix seconds")
    expires_at: int | None = Field(description="unix seconds; null: until revoked")
    revoked_at: int | None = Field(description="unix seconds; null: not revoked")
    live: bool = Field(description="neither expired nor revoked: it is accepted now")

    @classmethod
    def of(cls, t: TokenInfo) -> TokenInfoOut:
        return cls(
            id=t.id,
            name=t.name,
            role=t.role,
            created_at=t.created_at,
            expires_at=t.expires_at,
            revoked_at=t.revoked_at,
            live=t.live(time.time()),
        )


TokenId = Annotated[
    str, Path(pattern=TOKEN_ID_PATTERN, description="the token's public id (12 hex digits)")
]


class ClinicianIn(JsonBody):
    address: Address
    role: Annotated[str, Field(min_length=1, max_length=64)]
    licence_expiry: int | None = Field(
        None,
        ge=1,
        lt=2**40,
        description="unix seconds; the node writes it into the clinician's zero-knowledge "
        "credentials (with the role), none are issued without it",
    )
    name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=REASON_PATTERN,
        description="display name patients see when choosing a grantee, e.g. Dr Alice Bell",
    )


class ClinicianOut(BaseModel):
    address: str
    role: str
    added_at: int
    licence_expiry: int | None
    name: str | None = Field(description="display name; null: none given")

    @classmethod
    def of(cls, c: Clinician) -> ClinicianOut:
        return cls(
            address=c.address,
            role=c.role,
            added_at=c.added_at,
            licence_expiry=c.licence_expiry,
            name=c.name,
        )


class DirectoryEntryOut(BaseModel):
    address: str = Field(description="the clinician's wallet address (checksummed)")
    name: str | None = Field(description="display name; null: none given")
    role: str = Field(description="e.g. physician, nurse")
    hospital: int = Field(description="this hospital's consortium member id")
    hospital_name: str = Field(description="this hospital's name")


_ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    401: {"description": "no API token, or an unknown, expired or revoked one"},
    403: {"description": "not an admin token"},
}


@router.post(
    "/admin/tokens",
    response_model=TokenOut,
    status_code=201,
    summary="Create an API token; it expires after expires_in seconds or the node's default "
    "(admin)",
    responses={**_ADMIN_ONLY, 422: {"description": "malformed body (name, role, expires_in)"}},
)
def create_token(body: TokenIn, settings: SettingsDep, auth: AuthDep, _admin: AdminDep) -> TokenOut:
    ttl = body.expires_in
    if ttl is None and settings.api.token_ttl_days:
        ttl = settings.api.token_ttl_days * 86400
    issued = auth.issue_token(body.name, body.role, ttl=ttl)
    return TokenOut(
        id=issued.id,
        name=body.name,
        role=body.role,
        expires_at=issued.expires_at,
        token=issued.token,
    )


@router.get(
    "/admin/tokens",
    response_model=list[TokenInfoOut],
    summary="List API tokens, expired and revoked ones too, without the tokens (admin)",
    responses=_ADMIN_ONLY,
)
def list_tokens(auth: AuthDep, _admin: AdminDep) -> list[TokenInfoOut]:
    return [TokenInfoOut.of(t) for t in auth.list_tokens()]


@router.post(
    "/admin/tokens/{token_id}/revoke",
    response_model=TokenInfoOut,
    summary="Revoke an API token: refused on every API process within api.auth_cache_ttl "
    "seconds; the last live admin token only with force (admin)",
    responses={
        **_ADMIN_ONLY,
        404: {"description": "no token with this id"},
        409: {"description": "already revoked, or the last live admin token and force is not set"},
        422: {"description": "token_id is not 12 hex digits, or force is not a boolean"},
    },
)
def revoke_token(
    token_id: TokenId,
    auth: AuthDep,
    admin: AdminDep,
    force: Annotated[
        bool,
        Query(
            description="revoke even the last live admin token (the node then has none until "
            "a restart writes a new bootstrap admin token)"
        ),
    ] = False,
) -> TokenInfoOut:
    revoked = auth.revoke_token(token_id, force=force)
    log.info("API token %s (%s) revoked by token %s", revoked.id, revoked.role, admin.token_id)
    return TokenInfoOut.of(revoked)


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
def rotate_keys(keys: KeysDep, background: BackgroundDep, admin: AdminDep) -> KeyRotationOut:
    with acting_as(f"token:{admin.name}"):
        version = rotate(keys, background)
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
def rotate_signer(keys: KeysDep, chain: ChainDep, admin: AdminDep) -> SignerRotationOut:
    with acting_as(f"token:{admin.name}"):
        r = start_signer_rotation(keys, chain)
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
def key_status(
    keys: KeysDep, index: IndexDep, background: BackgroundDep, _admin: AdminDep
) -> KeyStatusOut:
    s = rotation_status(keys, index, background)
    return KeyStatusOut(
        current=s.current,
        usage=s.usage,
        pending=s.pending,
        live=s.live,
        retired=s.retired,
        unreadable=s.unreadable,
        rewrap_error=s.rewrap_error,
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
def add_clinician(body: ClinicianIn, directory: DirectoryDep, _caller: HospitalDep) -> ClinicianOut:
    return ClinicianOut.of(
        directory.add_clinician(body.address, body.role, body.licence_expiry, body.name)
    )


@router.get(
    "/clinicians",
    response_model=list[ClinicianOut],
    summary="List this hospital's clinicians (hospital)",
)
def list_clinicians(directory: DirectoryDep, _caller: HospitalDep) -> list[ClinicianOut]:
    return [ClinicianOut.of(c) for c in directory.clinicians()]


@router.get(
    "/clinicians/directory",
    response_model=list[DirectoryEntryOut],
    summary="This hospital's clinician directory: address, name, role and hospital, for "
    "patients choosing whom to grant access (any wallet session or API token)",
    responses={
        401: {"description": "no credential, or an unknown, expired or revoked one"},
        503: {"description": "chain unreachable (the hospital's member id and name)"},
    },
)
def clinician_directory(
    directory: DirectoryDep, chain: ChainDep, settings: SettingsDep, _caller: PrincipalDep
) -> list[DirectoryEntryOut]:
    hospital = chain.member_id(chain.hospital)
    name = dict(chain.members()).get(chain.hospital, settings.hospital_name)
    return [
        DirectoryEntryOut(
            address=c.address, name=c.name, role=c.role, hospital=hospital, hospital_name=name
        )
        for c in directory.clinicians()
    ]
