"""Patients' RecoverableWallets: create one (hospital token), read it, publish its EIP-712
types, and relay guardians' approvals of a new owner, the owner's cancellation and the
finalization after the delay (anyone: the signatures are the authority; the node pays the
gas). Key loss and recovery: docs/wallet-recovery.md."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from node.api.deps import (
    HospitalDep,
    OptionalWalletsDep,
    SettingsDep,
    SignaturesDep,
)
from node.api.schemas.common import (
    Address,
    AddressParam,
    HexBytes,
    JsonBody,
    parse_address,
    to_bytes,
    to_hex,
)
from node.chain.abc import RecoverableWalletsAPI
from node.chain.wallet_typed_data import PRIMARY_TYPES, wallet_domain
from node.consent.typed_data import EIP712_DOMAIN_TYPE
from node.exceptions import NotFound
from node.flows.recover_wallet import (
    MAX_DELAY,
    MAX_GUARDIANS,
    RecoveryStatus,
    approve_recovery,
    cancel_recovery,
    create_wallet,
    finalize_recovery,
    pending_status,
    require_wallet,
)

router = APIRouter(prefix="/wallets", tags=["wallets"])

MAX_SIGNATURE_HEX = 2 + 2 * 1024  # an ERC-1271 guardian's signature may exceed 65 bytes


class WalletIn(JsonBody):
    owner: Address = Field(description="the key that signs for the wallet (an EOA)")
    guardians: list[Address] = Field(
        min_length=1,
        max_length=MAX_GUARDIANS,
        description="distinct addresses (EOA or ERC-1271), none the owner; fixed at creation",
    )
    threshold: int = Field(ge=1, le=MAX_GUARDIANS, description="approvals a new owner needs")
    delay: int = Field(
        ge=0,
        le=MAX_DELAY,
        description="seconds between the threshold being reached and the new owner taking "
        "over; at least this node's wallets.min_recovery_delay",
    )


class WalletCreatedOut(BaseModel):
    address: str
    tx_hash: str


class PendingOut(BaseModel):
    new_owner: str
    approvals: list[str] = Field(description="guardians who approved new_owner this round")
    eta: int | None = Field(
        description="unix seconds from which finalize succeeds; null until the approvals "
        "reach the threshold"
    )
    ready: bool = Field(description="eta reached: finalize may be called")


class WalletOut(BaseModel):
    address: str
    owner: str
    guardians: list[str]
    threshold: int
    delay: int
    nonce: int = Field(description="the recovery round that signed approvals/cancels name")
    pending: PendingOut | None = Field(description="the recovery that reached the threshold")


class WalletTypedDataOut(BaseModel):
    domain: dict[str, Any]
    types: dict[str, list[dict[str, str]]]
    primary_types: list[str]
    nonce: int = Field(description="the wallet's current round: the `nonce` to sign")


class ApprovalIn(JsonBody):
    new_owner: Address
    guardian: Address = Field(description="the guardian whose signature this is")
    deadline: int = Field(ge=0, lt=2**256, description="the signed deadline, unix seconds")
    signature: HexBytes = Field(
        max_length=MAX_SIGNATURE_HEX,
        description="the guardian's EIP-712 signature of ApproveRecovery(newOwner, nonce, "
        "deadline)",
    )


class ApprovalOut(BaseModel):
    tx_hash: str
    pending: PendingOut = Field(description="where the recovery to new_owner stands now")


class CancelIn(JsonBody):
    deadline: int = Field(ge=0, lt=2**256, description="the signed deadline, unix seconds")
    signature: HexBytes = Field(
        max_length=MAX_SIGNATURE_HEX,
        description="the owner's EIP-712 signature of CancelRecovery(nonce, deadline)",
    )


class TxOut(BaseModel):
    tx_hash: str


class FinalizedOut(BaseModel):
    owner: str
    tx_hash: str


def _wallets(wallets: RecoverableWalletsAPI | None) -> RecoverableWalletsAPI:
    if wallets is None:
        raise NotFound("recoverable wallets are disabled on this node (wallets.enabled)")
    return wallets


def _pending_out(status: RecoveryStatus) -> PendingOut:
    return PendingOut(
        new_owner=status.new_owner,
        approvals=list(status.approvals),
        eta=status.eta,
        ready=status.ready,
    )


_NOT_OURS = {"description": "not a RecoverableWallet of this network (or wallets disabled)"}
_ADDRESS_400 = {"description": "address is not an address"}
_CHAIN_503 = {"description": "the chain is unreachable: nothing was sent"}


@router.post(
    "",
    response_model=WalletCreatedOut,
    status_code=201,
    summary="Create a patient's recoverable wallet (hospital token; the node pays)",
    responses={
        400: {
            "description": "repeated, zero or owner guardian, threshold above the guardians, "
            "delay below wallets.min_recovery_delay"
        },
        401: {"description": "no or unknown API token"},
        403: {"description": "not a hospital token"},
        404: {"description": "wallets disabled on this node"},
        409: {"description": "a wallet with these settings exists already"},
        422: {"description": "malformed body (addresses, ranges)"},
        503: _CHAIN_503,
    },
)
def create(
    body: WalletIn,
    wallets: OptionalWalletsDep,
    settings: SettingsDep,
    caller: HospitalDep,
) -> WalletCreatedOut:
    address, tx = create_wallet(
        body.owner,
        body.guardians,
        body.threshold,
        body.delay,
        wallets=_wallets(wallets),
        min_delay=settings.wallets.min_recovery_delay,
    )
    return WalletCreatedOut(address=address, tx_hash=to_hex(tx.tx_hash))


@router.get(
    "/{address}",
    response_model=WalletOut,
    summary="A recoverable wallet: owner, guardians, threshold, delay, pending recovery (anyone)",
    responses={400: _ADDRESS_400, 404: _NOT_OURS, 503: _CHAIN_503},
)
def show(address: AddressParam, wallets: OptionalWalletsDep) -> WalletOut:
    w = _wallets(wallets)
    state = require_wallet(parse_address("address", address), wallets=w)
    pending = pending_status(state, wallets=w)
    return WalletOut(
        address=state.address,
        owner=state.owner,
        guardians=list(state.guardians),
        threshold=state.threshold,
        delay=state.delay,
        nonce=state.nonce,
        pending=None if pending is None else _pending_out(pending),
    )


@router.get(
    "/{address}/typed-data",
    response_model=WalletTypedDataOut,
    summary="EIP-712 domain and types of ApproveRecovery and CancelRecovery (anyone)",
    description="The domain's verifyingContract is the wallet itself: a signature for one "
    "wallet is worthless for another. Sign `nonce` as given here; it changes when a round "
    "is cancelled or finalized.",
    responses={400: _ADDRESS_400, 404: _NOT_OURS, 503: _CHAIN_503},
)
def typed_data(address: AddressParam, wallets: OptionalWalletsDep) -> WalletTypedDataOut:
    w = _wallets(wallets)
    state = require_wallet(parse_address("address", address), wallets=w)
    return WalletTypedDataOut(
        domain=wallet_domain(w.chain_id, state.address),
        types={"EIP712Domain": EIP712_DOMAIN_TYPE, **PRIMARY_TYPES},
        primary_types=list(PRIMARY_TYPES),
        nonce=state.nonce,
    )


@router.post(
    "/{address}/recovery/approvals",
    response_model=ApprovalOut,
    summary="Relay a guardian's signed approval of a new owner (anyone: the guardian's "
    "signature is the authority)",
    description="Checked before anything is sent: the wallet, the deadline, the round, the "
    "guardian and the signature (an ERC-1271 guardian is asked with a call). When the "
    "approvals reach the threshold the recovery is pending until `pending.eta`.",
    responses={
        400: {"description": "expired deadline; new_owner zero or the current owner; bad path"},
        401: {"description": "guardian is not a guardian, or the signature is not theirs"},
        404: _NOT_OURS,
        409: {"description": "a recovery is pending already, or this approval was counted"},
        422: {"description": "malformed body"},
        503: _CHAIN_503,
    },
)
def approve(
    address: AddressParam,
    body: ApprovalIn,
    wallets: OptionalWalletsDep,
    signatures: SignaturesDep,
) -> ApprovalOut:
    tx, status = approve_recovery(
        parse_address("address", address),
        body.new_owner,
        body.guardian,
        body.deadline,
        to_bytes(body.signature),
        wallets=_wallets(wallets),
        contracts=signatures,
    )
    return ApprovalOut(tx_hash=to_hex(tx.tx_hash), pending=_pending_out(status))


@router.post(
    "/{address}/recovery/cancel",
    response_model=TxOut,
    summary="Relay the owner's signed cancellation: voids a pending recovery and this "
    "round's approvals (anyone: the owner's signature is the authority)",
    responses={
        400: {"description": "expired deadline; bad path"},
        401: {"description": "the signature is not the owner's"},
        404: _NOT_OURS,
        422: {"description": "malformed body"},
        503: _CHAIN_503,
    },
)
def cancel(address: AddressParam, body: CancelIn, wallets: OptionalWalletsDep) -> TxOut:
    tx = cancel_recovery(
        parse_address("address", address),
        body.deadline,
        to_bytes(body.signature),
        wallets=_wallets(wallets),
    )
    return TxOut(tx_hash=to_hex(tx.tx_hash))


@router.post(
    "/{address}/recovery/finalize",
    response_model=FinalizedOut,
    summary="Hand the wallet to the pending recovery's new owner once its delay has passed "
    "(anyone)",
    responses={
        400: _ADDRESS_400,
        404: _NOT_OURS,
        409: {"description": "no recovery pending, or its eta not reached"},
        503: _CHAIN_503,
    },
)
def finalize(address: AddressParam, wallets: OptionalWalletsDep) -> FinalizedOut:
    owner, tx = finalize_recovery(parse_address("address", address), wallets=_wallets(wallets))
    return FinalizedOut(owner=owner, tx_hash=to_hex(tx.tx_hash))
