"""EIP-712 typed data of the ConsentRegistry: what a patient's wallet signs.

The node publishes these types and its domain (GET /consents/typed-data) so any wallet
(``eth_signTypedData_v4``) can sign a Grant or Revoke (one reader address) or a GrantClass
or RevokeClass (a class of readers: hospital member id, 0 = any member hospital, and a
16-bit mask of clinician roles); tests sign with eth-account.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from eth_utils import keccak

DOMAIN_NAME = "EMR Consent"
DOMAIN_VERSION = "1"

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
GRANT_TYPE = [
    {"name": "patient", "type": "address"},
    {"name": "grantee", "type": "address"},
    {"name": "scopeKind", "type": "uint8"},
    {"name": "scope", "type": "bytes32"},
    {"name": "expiresAt", "type": "uint64"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
REVOKE_TYPE = [
    {"name": "patient", "type": "address"},
    {"name": "grantee", "type": "address"},
    {"name": "scopeKind", "type": "uint8"},
    {"name": "scope", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
GRANT_CLASS_TYPE = [
    {"name": "patient", "type": "address"},
    {"name": "hospital", "type": "uint32"},
    {"name": "roles", "type": "uint16"},
    {"name": "scopeKind", "type": "uint8"},
    {"name": "scope", "type": "bytes32"},
    {"name": "expiresAt", "type": "uint64"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
REVOKE_CLASS_TYPE = [
    {"name": "patient", "type": "address"},
    {"name": "hospital", "type": "uint32"},
    {"name": "roles", "type": "uint16"},
    {"name": "scopeKind", "type": "uint8"},
    {"name": "scope", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
PRIMARY_TYPES = {
    "Grant": GRANT_TYPE,
    "Revoke": REVOKE_TYPE,
    "GrantClass": GRANT_CLASS_TYPE,
    "RevokeClass": REVOKE_CLASS_TYPE,
}
ANY_HOSPITAL = 0  # a reader class's hospital: any member hospital
MAX_HOSPITAL_ID = 2**32 - 1  # uint32 Consortium member ids
MAX_ROLES_MASK = 2**16 - 1  # uint16 mask of clinician roles (bit i: role i)


class ScopeKind(IntEnum):
    RECORD = 0
    CATEGORY = 1
    ALL = 2


class AccessBasis(IntEnum):
    """Why a read was allowed (mirrors ConsentRegistry.accessBasis, plus the patient)."""

    NONE = 0
    RECORD_CONSENT = 1
    CATEGORY_CONSENT = 2
    ALL_CONSENT = 3
    BREAK_GLASS = 4
    PATIENT = 5  # the patient reading their own record; decided off-chain


def category_hash(category: str) -> bytes:
    """On-chain id of a category: ``keccak256(bytes(name))``."""
    return keccak(text=category)


def domain(chain_id: int, verifying_contract: str) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": verifying_contract,
    }


def full_message(primary_type: str, message: dict[str, Any], dom: dict[str, Any]) -> dict[str, Any]:
    """The complete ``eth_signTypedData_v4`` payload for a Grant, Revoke, GrantClass or
    RevokeClass."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, primary_type: PRIMARY_TYPES[primary_type]},
        "primaryType": primary_type,
        "domain": dom,
        "message": message,
    }
