"""Signed reader-class consents (EIP-712 GrantClass / RevokeClass) as the chain client
relays them. A reader class is (hospital: a Consortium member id, 0 = any member hospital;
roles: a nonzero 16-bit mask of clinician roles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.consent.typed_data import ScopeKind


@dataclass(frozen=True, slots=True)
class ClassConsentGrant:
    """A patient's GrantClass: readers of ``roles`` at member ``hospital`` (0 = any member
    hospital) may read the scope anonymously, with a proof, until ``expires_at``."""

    patient: str
    hospital: int
    roles: int
    scope_kind: ScopeKind
    scope: bytes
    expires_at: int
    nonce: int
    deadline: int

    def message(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "hospital": self.hospital,
            "roles": self.roles,
            "scopeKind": int(self.scope_kind),
            "scope": self.scope,
            "expiresAt": self.expires_at,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }


@dataclass(frozen=True, slots=True)
class ClassConsentRevoke:
    """A patient's RevokeClass: ends the class consent with the same (hospital, roles,
    scope) from the next block on."""

    patient: str
    hospital: int
    roles: int
    scope_kind: ScopeKind
    scope: bytes
    nonce: int
    deadline: int

    def message(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "hospital": self.hospital,
            "roles": self.roles,
            "scopeKind": int(self.scope_kind),
            "scope": self.scope,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }


@dataclass(frozen=True, slots=True)
class ClassConsent:
    """A patient's live reader-class consent as the ConsentRegistry holds it now: readers
    of ``roles`` (16-bit mask) at ``hospital`` (member id; 0 = any member hospital), over
    the scope (``scope_kind`` 0 record / 1 category / 2 everything), until ``expires_at``."""

    hospital: int
    roles: int
    scope_kind: int
    scope: bytes
    expires_at: int
