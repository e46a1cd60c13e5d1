"""Consent: check a patient's EIP-712 Grant or Revoke, then relay it (the node pays gas).

Cheap checks run first for a precise reason; the chain then simulates the call (signature,
ERC-1271 wallets, nonce) before anything is sent, so a refused consent changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from node.chain.abc import ChainClientAPI
from node.chain.exceptions import ContractReverted
from node.chain.models import ConsentGrant, ConsentRevoke, TxResult
from node.consent.typed_data import ScopeKind
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
