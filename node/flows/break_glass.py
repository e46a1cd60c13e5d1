"""Break-glass: a member hospital opens time-limited emergency access for one of its
clinicians, approved by another, with a reason; the patient sees every opening.

The policy (``BreakGlassSettings``, checked before anything goes on-chain):

- the clinician is in the hospital's directory with a role in ``roles`` and a licence that
  has not expired (403 otherwise);
- ``approved_by`` is another clinician of the directory (never the clinician themself),
  with a role in ``approver_roles`` and a licence that has not expired (403);
- the duration is at most ``max_duration`` (400);
- no renewal: while the clinician has live break-glass on the patient that covers the
  record (on-chain, or in this node's ledger), no new one opens (409);
- at most ``max_per_clinician`` openings for one clinician and ``max_per_patient`` on one
  patient per rolling ``window`` (429, with Retry-After).

The reason may describe a clinical situation, and reasons are often templated, so only a
salted commitment to it goes on-chain, binding the approver and the hospital token's name
as well (node/audit/reasons.py). The node keeps reason, salt, approver and token name: an
auditor, and the patient for their own break-glass, get them and can recompute the hash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from node.audit.reasons import (
    BREAK_GLASS,
    ReasonCommitment,
    encodable,
    new_commitment,
    verifies,
)
from node.chain.abc import ChainClientAPI
from node.chain.models import AuditEvent, TxResult
from node.consent.typed_data import AccessBasis
from node.directory import (
    ALL_RECORDS,
    BreakGlassLedgerAPI,
    BreakGlassLimits,
    BreakGlassOpening,
    ClinicianDirectoryAPI,
    ReasonStoreAPI,
)
from node.exceptions import Conflict, Forbidden, InvalidRequest
from node.settings import BreakGlassSettings

log = logging.getLogger(__name__)

OPENED_EVENT = "BreakGlassOpened"


@dataclass(frozen=True, slots=True)
class BreakGlassRequest:
    patient: str
    clinician: str
    record_id: bytes | None  # None: every record of the patient
    duration: int  # seconds
    reason: str
    approved_by: str  # the approving clinician
    opened_by: str  # the name of the hospital API token that asks


@dataclass(frozen=True, slots=True)
class BreakGlassResult:
    tx: TxResult
    commitment: ReasonCommitment
    expires_at: int  # unix seconds, as the chain set it

    @property
    def reason_hash(self) -> bytes:
        return self.commitment.reason_hash


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A reason disclosed for an on-chain hash, and whether it recomputes that hash."""

    commitment: ReasonCommitment
    verified: bool
    tx_hash: bytes | None  # the transaction this node recorded it for, if any
    stored_at: int  # unix seconds


@dataclass(frozen=True, slots=True)
class BreakGlassNotice:
    """A BreakGlassOpened event, with this node's disclosure when it opened it."""

    event: AuditEvent
    disclosure: Disclosure | None


def open_break_glass(
    request: BreakGlassRequest,
    *,
    chain: ChainClientAPI,
    clinicians: ClinicianDirectoryAPI,
    ledger: BreakGlassLedgerAPI,
    policy: BreakGlassSettings,
    now: int,
) -> BreakGlassResult:
    """Check the request against the policy, then open emergency access on-chain.

    Raises InvalidRequest (blank reason, duration), Forbidden (clinician or approver not
    allowed, self-approval), Conflict (live break-glass already) and LimitExceeded (caps);
    nothing is sent to the chain then."""
    if not request.reason.strip():
        raise InvalidRequest("a break-glass reason is mandatory")
    if not encodable(request.reason):
        raise InvalidRequest("the reason is not valid Unicode text")
    if not 0 < request.duration <= policy.max_duration:
        raise InvalidRequest(
            f"duration must be between 1 and {policy.max_duration} seconds "
            "(break_glass.max_duration)"
        )
    _check_clinician(clinicians, request.clinician, policy.roles, "clinician", now)
    if request.approved_by == request.clinician:
        raise Forbidden("a clinician cannot approve their own break-glass")
    _check_clinician(clinicians, request.approved_by, policy.approver_roles, "approver", now)
    record = request.record_id or ALL_RECORDS
    live_until = chain.access_expiry(
        request.patient, request.clinician, record, ALL_RECORDS, AccessBasis.BREAK_GLASS
    )
    if live_until > now:
        raise Conflict(
            f"clinician {request.clinician} already has live break-glass on this patient "
            f"until {live_until}; it cannot be renewed before it ends"
        )
    commitment = new_commitment(BREAK_GLASS, request.reason, request.opened_by, request.approved_by)
    limits = BreakGlassLimits(policy.window, policy.max_per_clinician, policy.max_per_patient)
    opening = BreakGlassOpening(
        request.patient, request.clinician, record, now, now + request.duration, commitment
    )
    opening_id = ledger.reserve(opening, limits)
    try:
        tx = chain.open_break_glass(
            request.patient,
            request.clinician,
            request.record_id,
            request.duration,
            commitment.reason_hash,
        )
    except BaseException:
        ledger.release(opening_id)
        raise
    expires_at = (
        chain.access_expiry(
            request.patient, request.clinician, record, ALL_RECORDS, AccessBasis.BREAK_GLASS
        )
        or opening.expires_at
    )
    ledger.confirm(opening_id, tx.tx_hash, expires_at)
    log.info(
        "break-glass opened for %s on %s (approved by %s, token %s, tx 0x%s)",
        request.clinician,
        request.patient,
        request.approved_by,
        request.opened_by,
        tx.tx_hash.hex(),
    )
    return BreakGlassResult(tx, commitment, expires_at)


def _check_clinician(
    clinicians: ClinicianDirectoryAPI, address: str, roles: list[str], what: str, now: int
) -> None:
    found = clinicians.clinician(address)
    if found is None:
        raise Forbidden(f"{what} {address} is not in this hospital's clinician directory")
    if found.role not in roles:
        raise Forbidden(
            f"{what} {address} has role {found.role!r}; break-glass needs one of {', '.join(roles)}"
        )
    if found.licence_expiry is not None and found.licence_expiry <= now:
        raise Forbidden(f"{what} {address}: licence expired at {found.licence_expiry}")


def disclose(
    reason_hash: bytes, tx_hash: bytes | None, *, reasons: ReasonStoreAPI
) -> Disclosure | None:
    """The reason this node stored under ``reason_hash``, checked against it.

    With ``tx_hash`` (an event's transaction), only a reason this node recorded for that
    very transaction is disclosed: another member copying the hash into its own event for
    another patient learns nothing."""
    stored = reasons.stored_reason(reason_hash)
    if stored is None or (tx_hash is not None and stored.tx_hash != tx_hash):
        return None
    return Disclosure(
        stored.commitment,
        verifies(stored.commitment, reason_hash),
        stored.tx_hash,
        stored.opened_at,
    )


def disclose_event(event: AuditEvent, *, reasons: ReasonStoreAPI) -> Disclosure | None:
    """The disclosure for a BreakGlassOpened event this node sent (None otherwise)."""
    if event.event != OPENED_EVENT:
        return None
    return disclose(bytes(event.args["reasonHash"]), bytes(event.tx_hash), reasons=reasons)


def break_glass_notices(
    patient: str, *, since: int | None, chain: ChainClientAPI, reasons: ReasonStoreAPI
) -> list[BreakGlassNotice]:
    """Every break-glass opened on ``patient``'s records, by any member hospital, at or
    after ``since`` (unix seconds), oldest first; reasons disclosed for this node's."""
    return [
        BreakGlassNotice(e, disclose_event(e, reasons=reasons))
        for e in chain.audit_events(patient=patient)
        if e.event == OPENED_EVENT and (since is None or e.timestamp >= since)
    ]
