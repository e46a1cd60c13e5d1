"""Patients' RecoverableWallets: create one, relay guardians' approvals of a new owner and
the owner's cancellation, finalize a recovery after its delay.

Like consent relaying, every request is checked off-chain first against the wallet's state
(a code-hash check that the address is one of our wallets, the round's nonce, guardians,
deadline, the EIP-712 signature): a refused request sends nothing and costs no gas. The
chain then simulates the call before it is sent, for what changed in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from eth_account import Account
from eth_utils import to_checksum_address

from node.chain.abc import ContractSignaturesAPI, RecoverableWalletsAPI
from node.chain.exceptions import ContractReverted
from node.chain.models import TxResult, WalletState
from node.chain.wallet_typed_data import digest, wallet_domain
from node.exceptions import Conflict, InvalidRequest, NotFound, Unauthenticated

MAX_GUARDIANS = 8  # RecoverableWallet.MAX_GUARDIANS
MAX_DELAY = 2**32 - 1  # the wallet stores its delay in 32 bits
ZERO_ADDRESS = "0x" + "00" * 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecoveryStatus:
    """Where a recovery to ``new_owner`` stands: ``eta`` None until the approvals reach the
    threshold; ``ready`` once the chain's time has reached ``eta``."""

    new_owner: str
    approvals: tuple[str, ...]
    eta: int | None
    ready: bool


# The wallet's errors that a race past the off-chain checks can still produce.
_REVERTS: dict[str, tuple[type[Exception], str]] = {
    "RecoverableWalletExpiredDeadline": (InvalidRequest, "the signature's deadline has passed"),
    "RecoverableWalletInvalidSignature": (
        Unauthenticated,
        "the signature is not the expected signer's over this wallet's EIP-712 message",
    ),
    "RecoverableWalletNotGuardian": (Unauthenticated, "the signer is not a guardian"),
    "RecoverableWalletAlreadyApproved": (Conflict, "this guardian already approved"),
    "RecoverableWalletRecoveryPending": (Conflict, "a recovery is already pending"),
    "RecoverableWalletNoPendingRecovery": (Conflict, "no recovery is pending"),
    "RecoverableWalletRecoveryNotReady": (Conflict, "the recovery delay has not passed yet"),
    "RecoverableWalletInvalidOwner": (InvalidRequest, "invalid new owner"),
}


def _send(send: Callable[[], T]) -> T:
    try:
        result = send()
    except ContractReverted as err:
        mapped = _REVERTS.get(err.name)
        if mapped is None:
            raise
        kind, reason = mapped
        raise kind(f"{reason} (the wallet refused: nothing changed)") from err
    return result


def require_wallet(address: str, *, wallets: RecoverableWalletsAPI) -> WalletState:
    """The wallet at ``address``; ``NotFound`` unless it is one of this network's
    RecoverableWallets (nothing is ever sent to any other address)."""
    state = wallets.wallet(address)
    if state is None:
        raise NotFound(f"{address} is not a RecoverableWallet of this network's factory")
    return state


def create_wallet(
    owner: str,
    guardians: Sequence[str],
    threshold: int,
    delay: int,
    *,
    wallets: RecoverableWalletsAPI,
    min_delay: int,
) -> tuple[str, TxResult]:
    """Create a wallet for ``owner`` (the node pays). Refused before any transaction:
    0 or more than 8 guardians, a zero, repeated or owner guardian, a threshold outside
    1..guardians, a delay below ``min_delay`` or above 2**32-1 (``InvalidRequest``), the
    same settings used before (``Conflict``, naming the existing wallet)."""
    owner = to_checksum_address(owner)
    found = [to_checksum_address(g) for g in guardians]
    if owner == ZERO_ADDRESS:
        raise InvalidRequest("owner must not be the zero address")
    if not 1 <= len(found) <= MAX_GUARDIANS:
        raise InvalidRequest(f"a wallet needs 1 to {MAX_GUARDIANS} guardians")
    if len(set(found)) != len(found):
        raise InvalidRequest("guardians must be distinct")
    if ZERO_ADDRESS in found or owner in found:
        raise InvalidRequest("a guardian must not be the zero address or the owner")
    if not 1 <= threshold <= len(found):
        raise InvalidRequest(f"threshold must be between 1 and {len(found)} (the guardians)")
    if not min_delay <= delay <= MAX_DELAY:
        raise InvalidRequest(
            f"delay must be at least {min_delay} seconds (this node's wallets.min_recovery_delay)"
            f" and at most {MAX_DELAY}"
        )
    address = wallets.predict(owner, found, threshold, delay)
    if wallets.is_wallet(address):
        raise Conflict(f"a wallet with these settings exists already: {address}")
    return _send(lambda: wallets.create(owner, found, threshold, delay))


def recovery_status(
    state: WalletState, new_owner: str, *, wallets: RecoverableWalletsAPI
) -> RecoveryStatus:
    """Where a recovery of ``state``'s wallet to ``new_owner`` stands now."""
    new_owner = to_checksum_address(new_owner)
    if state.pending_owner == new_owner and state.eta is not None:
        return RecoveryStatus(
            new_owner, state.pending_approvals, state.eta, wallets.chain_time() >= state.eta
        )
    return RecoveryStatus(new_owner, wallets.approvals(state.address, new_owner), None, False)


def pending_status(state: WalletState, *, wallets: RecoverableWalletsAPI) -> RecoveryStatus | None:
    """The wallet's pending recovery (approvals reached the threshold), or None."""
    if state.pending_owner is None:
        return None
    return recovery_status(state, state.pending_owner, wallets=wallets)


def _check_deadline(deadline: int, wallets: RecoverableWalletsAPI) -> None:
    if deadline < wallets.chain_time():
        raise InvalidRequest("the signature's deadline has passed: sign again")


def _signed_by(
    signer: str,
    hash32: bytes,
    signature: bytes,
    *,
    contracts: ContractSignaturesAPI | None,
) -> bool:
    try:
        if Account._recover_hash(hash32, signature=signature) == signer:
            return True
    except Exception:  # a malformed signature recovers to nobody
        pass
    return contracts is not None and contracts.is_valid_signature(signer, hash32, signature)


def approve_recovery(
    address: str,
    new_owner: str,
    guardian: str,
    deadline: int,
    signature: bytes,
    *,
    wallets: RecoverableWalletsAPI,
    contracts: ContractSignaturesAPI | None,
) -> tuple[TxResult, RecoveryStatus]:
    """Relay ``guardian``'s ApproveRecovery of ``new_owner`` for the wallet's current round.

    Refused before any transaction: not our wallet (``NotFound``); an expired deadline or a
    zero / current-owner ``new_owner`` (``InvalidRequest``); a recovery already pending or
    this guardian's approval already counted (``Conflict``); ``guardian`` not a guardian or
    the signature not ``guardian``'s (EOA, or ERC-1271 asked with an eth_call) over
    ``ApproveRecovery(new_owner, nonce, deadline)`` (``Unauthenticated``)."""
    state = require_wallet(address, wallets=wallets)
    new_owner, guardian = to_checksum_address(new_owner), to_checksum_address(guardian)
    _check_deadline(deadline, wallets)
    if state.pending_owner is not None:
        raise Conflict(
            f"a recovery to {state.pending_owner} is pending (eta {state.eta}): finalize it or "
            "have the owner cancel it first"
        )
    if new_owner in (ZERO_ADDRESS, state.owner):
        raise InvalidRequest("new_owner must be a new, nonzero address")
    if guardian not in state.guardians:
        raise Unauthenticated(f"{guardian} is not a guardian of this wallet")
    if guardian in wallets.approvals(state.address, new_owner):
        raise Conflict("this guardian already approved this new owner in this round")
    message = {"newOwner": new_owner, "nonce": state.nonce, "deadline": deadline}
    hash32 = digest("ApproveRecovery", message, wallet_domain(wallets.chain_id, state.address))
    if not _signed_by(guardian, hash32, signature, contracts=contracts):
        raise Unauthenticated(
            f"the signature is not {guardian}'s over ApproveRecovery(newOwner, nonce "
            f"{state.nonce}, deadline) in this wallet's EIP-712 domain (GET .../typed-data)"
        )
    tx = _send(
        lambda: wallets.approve_recovery(state.address, new_owner, guardian, deadline, signature)
    )
    after = require_wallet(state.address, wallets=wallets)
    return tx, recovery_status(after, new_owner, wallets=wallets)


def cancel_recovery(
    address: str, deadline: int, signature: bytes, *, wallets: RecoverableWalletsAPI
) -> TxResult:
    """Relay the owner's CancelRecovery: ends the round (a pending recovery and every
    approval so far are void). Refused before any transaction: not our wallet (``NotFound``),
    an expired deadline (``InvalidRequest``), not the owner's signature over
    ``CancelRecovery(nonce, deadline)`` (``Unauthenticated``)."""
    state = require_wallet(address, wallets=wallets)
    _check_deadline(deadline, wallets)
    message = {"nonce": state.nonce, "deadline": deadline}
    hash32 = digest("CancelRecovery", message, wallet_domain(wallets.chain_id, state.address))
    if not _signed_by(state.owner, hash32, signature, contracts=None):
        raise Unauthenticated(
            f"the signature is not the owner's over CancelRecovery(nonce {state.nonce}, "
            "deadline) in this wallet's EIP-712 domain (GET .../typed-data)"
        )
    return _send(lambda: wallets.cancel_recovery(state.address, deadline, signature))


def finalize_recovery(address: str, *, wallets: RecoverableWalletsAPI) -> tuple[str, TxResult]:
    """Make the pending recovery's new owner the owner; return (owner, tx). Refused before
    any transaction: not our wallet (``NotFound``), nothing pending or the delay not passed
    (``Conflict``)."""
    state = require_wallet(address, wallets=wallets)
    if state.pending_owner is None or state.eta is None:
        raise Conflict("no recovery is pending")
    if wallets.chain_time() < state.eta:
        raise Conflict(f"the recovery delay has not passed: finalize at or after {state.eta}")
    tx = _send(lambda: wallets.finalize_recovery(state.address))
    return state.pending_owner, tx
