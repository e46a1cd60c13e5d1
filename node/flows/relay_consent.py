"""Consent: check a patient's EIP-712 Grant or Revoke, then relay it (the node pays gas).

Cheap checks run first for a precise reason; the chain then simulates the call (signature,
ERC-1271 wallets, nonce) before anything is sent, so a refused consent changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from node.chain.abc import ChainClientAPI
from node.chain.exceptions import ChainUnavailable, ContractReverted
from node.chain.models import ConsentGrant, ConsentRevoke, TxResult
from node.consent.relay_queue import ConsentRelayQueue, QueuedRelay
from node.consent.typed_data import ScopeKind, domain, full_message
from node.exceptions import Conflict, InvalidRequest

_REASONS = {
    "ConsentRegistryExpiredDeadline": "the signature's deadline has passed",
    "ConsentRegistryInvalidSignature": (
        "the signature is not the patient's over this Grant/Revoke for this chain's "
        "ConsentRegistry (check the EIP-712 domain: name, version, chainId, verifyingContract)"
    ),
    "ConsentRegistryInvalidScope": "scope does not match scopeKind (All needs scope 0)",
    "ConsentRegistryInvalidExpiry": "expiresAt must be in the future",
}


def check_domain(signed_domain: dict[str, Any] | None, chain: ChainClientAPI) -> None:
    """Name the field if the caller tells us which domain it signed and it is not ours."""
    if signed_domain is None:
        return
    ours = chain.consent_domain()
    for key in ("name", "version", "chainId", "verifyingContract"):
        theirs = signed_domain.get(key)
        if theirs is None:
            continue
        same = (
            str(theirs).lower() == str(ours[key]).lower()
            if key == "verifyingContract"
            else str(theirs) == str(ours[key])
        )
        if not same:
            raise InvalidRequest(
                f"EIP-712 domain {key} {theirs!r} does not match this node's {ours[key]!r}"
            )


def _check_common(
    patient: str,
    scope_kind: ScopeKind,
    scope: bytes,
    nonce: int,
    deadline: int,
    chain: ChainClientAPI,
) -> None:
    if deadline < time.time():
        raise InvalidRequest(_REASONS["ConsentRegistryExpiredDeadline"])
    if (scope_kind is ScopeKind.ALL) != (scope == b"\x00" * 32):
        raise InvalidRequest(_REASONS["ConsentRegistryInvalidScope"])
    current = chain.consent_nonce(patient)
    if nonce != current:
        raise Conflict(
            f"nonce {nonce} is not the patient's next nonce ({current}): "
            "a signature is used once (replayed?)"
        )


def _relay(send: Any) -> TxResult:
    try:
        result: TxResult = send()
    except ContractReverted as err:
        if err.name == "InvalidAccountNonce":
            raise Conflict("nonce already used: a signature is used once (replayed?)") from err
        reason = _REASONS.get(err.name)
        if reason is None:
            raise
        raise InvalidRequest(reason) from err
    return result


def relay_grant(
    grant: ConsentGrant,
    signature: bytes,
    *,
    chain: ChainClientAPI,
    signed_domain: dict[str, Any] | None = None,
) -> TxResult:
    check_domain(signed_domain, chain)
    if grant.expires_at <= time.time():
        raise InvalidRequest(_REASONS["ConsentRegistryInvalidExpiry"])
    _check_common(grant.patient, grant.scope_kind, grant.scope, grant.nonce, grant.deadline, chain)
    return _relay(lambda: chain.grant_with_sig(grant, signature))


def relay_revoke(
    revoke: ConsentRevoke,
    signature: bytes,
    *,
    chain: ChainClientAPI,
    signed_domain: dict[str, Any] | None = None,
) -> TxResult:
    check_domain(signed_domain, chain)
    _check_common(
        revoke.patient, revoke.scope_kind, revoke.scope, revoke.nonce, revoke.deadline, chain
    )
    return _relay(lambda: chain.revoke_with_sig(revoke, signature))


def _signed_by_patient(
    consent: ConsentGrant | ConsentRevoke, signature: bytes, chain: ChainClientAPI
) -> bool:
    """Off-chain EOA check (no chain access: the domain comes from the deployment)."""
    d = chain.deployment
    kind = "Grant" if isinstance(consent, ConsentGrant) else "Revoke"
    payload = full_message(kind, consent.message(), domain(d.chain_id, d.consent_registry))
    try:
        signer = Account.recover_message(
            encode_typed_data(full_message=payload), signature=signature
        )
    except Exception:  # a malformed signature recovers to nobody
        return False
    return bool(signer == consent.patient)


def relay_or_queue(
    consent: ConsentGrant | ConsentRevoke,
    signature: bytes,
    *,
    chain: ChainClientAPI,
    queue: ConsentRelayQueue,
    signed_domain: dict[str, Any] | None = None,
) -> TxResult | int:
    """Relay now, or, while the chain is unreachable, queue durably and return the queue id.

    A queued consent must at least carry the patient's own (EOA) signature; contract
    wallets (ERC-1271) can only be checked on-chain, so they wait for the chain."""
    relay = relay_grant if isinstance(consent, ConsentGrant) else relay_revoke
    try:
        return relay(consent, signature, chain=chain, signed_domain=signed_domain)  # type: ignore[arg-type]
    except ChainUnavailable:
        if consent.deadline < time.time():
            raise InvalidRequest(_REASONS["ConsentRegistryExpiredDeadline"]) from None
        if not _signed_by_patient(consent, signature, chain):
            raise
        return queue.enqueue(consent, signature)


def drain_relays(*, chain: ChainClientAPI, queue: ConsentRelayQueue, limit: int = 100) -> int:
    """Relay queued consents in order; stop at the first sign the chain is still away."""
    done = 0
    for item in queue.pending(limit):
        relay = relay_grant if isinstance(item.consent, ConsentGrant) else relay_revoke
        try:
            result = relay(item.consent, item.signature, chain=chain)  # type: ignore[arg-type]
        except ChainUnavailable:
            break
        except (InvalidRequest, Conflict, ContractReverted) as err:
            queue.mark_failed(item.relay_id, str(err))
        else:
            queue.mark_relayed(item.relay_id, result.tx_hash, result.block_number)
        done += 1
    return done


__all__ = ["QueuedRelay", "drain_relays", "relay_grant", "relay_or_queue", "relay_revoke"]
