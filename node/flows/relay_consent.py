"""Consent: check a patient's EIP-712 Grant or Revoke (one reader address) or GrantClass or
RevokeClass (a class of readers: a member hospital or any, and a roles mask), then relay it
(the node pays gas).

Cheap checks run first for a precise reason; the chain then simulates the call (signature,
ERC-1271 wallets, nonce) before anything is sent, so a refused consent changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from node.chain.abc import ChainClientAPI
from node.chain.class_consents import ClassConsentGrant, ClassConsentRevoke
from node.chain.exceptions import ChainUnavailable, ContractReverted
from node.chain.models import ConsentGrant, ConsentRevoke, TxResult
from node.consent.relay_queue import ConsentRelayQueue, QueuedRelay, SignedConsent
from node.consent.typed_data import (
    ANY_HOSPITAL,
    MAX_HOSPITAL_ID,
    MAX_ROLES_MASK,
    ScopeKind,
    domain,
    full_message,
)
from node.exceptions import Conflict, InvalidRequest
from node.observability.metrics import NULL_METRICS, MetricsAPI
from node.roles.abc import BackgroundWorkersAPI

RELAY_WORKER = "consent-relay"  # the background worker that runs drain_relays

_REASONS = {
    "ConsentRegistryExpiredDeadline": "the signature's deadline has passed",
    "ConsentRegistryInvalidSignature": (
        "the signature is not the patient's over this Grant/Revoke for this chain's "
        "ConsentRegistry (check the EIP-712 domain: name, version, chainId, verifyingContract)"
    ),
    "ConsentRegistryInvalidScope": "scope does not match scopeKind (All needs scope 0)",
    "ConsentRegistryInvalidExpiry": "expiresAt must be in the future",
    "ConsentRegistryInvalidClass": (
        "a reader class needs a nonzero roles mask (hospital 0 means any member hospital)"
    ),
}
_PRIMARY_TYPES: dict[type, str] = {
    ConsentGrant: "Grant",
    ConsentRevoke: "Revoke",
    ClassConsentGrant: "GrantClass",
    ClassConsentRevoke: "RevokeClass",
}
# The ``action`` label of emr_consents_total.
_ACTIONS: dict[type, str] = {
    ConsentGrant: "consent_grant",
    ConsentRevoke: "consent_revoke",
    ClassConsentGrant: "class_consent_grant",
    ClassConsentRevoke: "class_consent_revoke",
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


def _check_class(hospital: int, roles: int, chain: ChainClientAPI | None) -> None:
    """A reader class: a member hospital's id (0: any member hospital) and a nonzero mask.
    ``chain`` None skips the member look-up (the chain is away; it checks on relay)."""
    if not 0 < roles <= MAX_ROLES_MASK:
        raise InvalidRequest(_REASONS["ConsentRegistryInvalidClass"])
    if not 0 <= hospital <= MAX_HOSPITAL_ID:
        raise InvalidRequest("hospital must be a uint32 member id (0: any member hospital)")
    if chain is not None and hospital != ANY_HOSPITAL and chain.member_address(hospital) is None:
        raise InvalidRequest(f"no member hospital has id {hospital} (0 means any member hospital)")


def relay_class_grant(
    grant: ClassConsentGrant,
    signature: bytes,
    *,
    chain: ChainClientAPI,
    signed_domain: dict[str, Any] | None = None,
) -> TxResult:
    """Relay a GrantClass: readers of the class may read the scope anonymously, with a
    proof, until ``expires_at``."""
    check_domain(signed_domain, chain)
    _check_class(grant.hospital, grant.roles, chain)
    if grant.expires_at <= time.time():
        raise InvalidRequest(_REASONS["ConsentRegistryInvalidExpiry"])
    _check_common(grant.patient, grant.scope_kind, grant.scope, grant.nonce, grant.deadline, chain)
    return _relay(lambda: chain.grant_class_with_sig(grant, signature))


def relay_class_revoke(
    revoke: ClassConsentRevoke,
    signature: bytes,
    *,
    chain: ChainClientAPI,
    signed_domain: dict[str, Any] | None = None,
) -> TxResult:
    """Relay a RevokeClass: the class consent ends from the next block on."""
    check_domain(signed_domain, chain)
    _check_class(revoke.hospital, revoke.roles, None)  # a revoke may name a removed member
    _check_common(
        revoke.patient, revoke.scope_kind, revoke.scope, revoke.nonce, revoke.deadline, chain
    )
    return _relay(lambda: chain.revoke_class_with_sig(revoke, signature))


_RELAYS: dict[type, Any] = {
    ConsentGrant: relay_grant,
    ConsentRevoke: relay_revoke,
    ClassConsentGrant: relay_class_grant,
    ClassConsentRevoke: relay_class_revoke,
}


def _signed_by_patient(consent: SignedConsent, signature: bytes, chain: ChainClientAPI) -> bool:
    """Off-chain EOA check (no chain access: the domain comes from the deployment)."""
    d = chain.deployment
    kind = _PRIMARY_TYPES[type(consent)]
    payload = full_message(kind, consent.message(), domain(d.chain_id, d.consent_registry))
    try:
        signer = Account.recover_message(
            encode_typed_data(full_message=payload), signature=signature
        )
    except Exception:  # a malformed signature recovers to nobody
        return False
    return bool(signer == consent.patient)


def relay_or_queue(
    consent: SignedConsent,
    signature: bytes,
    *,
    chain: ChainClientAPI,
    queue: ConsentRelayQueue,
    signed_domain: dict[str, Any] | None = None,
    background: BackgroundWorkersAPI | None = None,
    metrics: MetricsAPI = NULL_METRICS,
) -> TxResult | int:
    """Relay now, or, while the chain is unreachable, queue durably and return the queue id
    (and wake ``background``'s consent-relay worker, when given, to retry soon). Counts
    ``emr_consents_total`` (relayed, queued, or failed when it raises).

    A queued consent must at least carry the patient's own (EOA) signature; contract
    wallets (ERC-1271) can only be checked on-chain, so they wait for the chain."""
    action = _ACTIONS[type(consent)]
    try:
        result = _relay_or_queue(consent, signature, chain, queue, signed_domain, background)
    except Exception:
        metrics.count("emr_consents_total", action=action, result="failed")
        raise
    outcome = "relayed" if isinstance(result, TxResult) else "queued"
    metrics.count("emr_consents_total", action=action, result=outcome)
    return result


def _relay_or_queue(
    consent: SignedConsent,
    signature: bytes,
    chain: ChainClientAPI,
    queue: ConsentRelayQueue,
    signed_domain: dict[str, Any] | None,
    background: BackgroundWorkersAPI | None,
) -> TxResult | int:
    relay = _RELAYS[type(consent)]
    try:
        result: TxResult = relay(consent, signature, chain=chain, signed_domain=signed_domain)
        return result
    except ChainUnavailable:
        if consent.deadline < time.time():
            raise InvalidRequest(_REASONS["ConsentRegistryExpiredDeadline"]) from None
        if isinstance(consent, ClassConsentGrant | ClassConsentRevoke):
            _check_class(consent.hospital, consent.roles, None)
        if not _signed_by_patient(consent, signature, chain):
            raise
        relay_id = queue.enqueue(consent, signature)
        if background is not None:
            background.wake(RELAY_WORKER)
        return relay_id


def drain_relays(
    *, chain: ChainClientAPI, queue: ConsentRelayQueue, limit: int = 100, fence: int | None = None
) -> int:
    """Relay queued consents in order; stop at the first sign the chain is still away.

    ``fence``: the worker's lease fence, under which the rows are claimed (see
    ``ConsentRelayQueue.pending``); None for a queue only this process drains."""
    done = 0
    for item in queue.pending(limit, fence=fence):
        relay = _RELAYS[type(item.consent)]
        try:
            result = relay(item.consent, item.signature, chain=chain)
        except ChainUnavailable:
            break
        except (InvalidRequest, Conflict, ContractReverted) as err:
            queue.mark_failed(item.relay_id, str(err))
        else:
            queue.mark_relayed(item.relay_id, result.tx_hash, result.block_number)
        done += 1
    return done


__all__ = [
    "QueuedRelay",
    "drain_relays",
    "relay_class_grant",
    "relay_class_revoke",
    "relay_grant",
    "relay_or_queue",
    "relay_revoke",
]
