"""Salted commitments to break-glass and erasure reasons: what goes on-chain for them.

A reason is free text that may describe a patient's situation, and it is often templated
("unconscious patient in ER"): its plain keccak256 could be recovered by hashing a list of
likely reasons. The chain therefore gets a salted commitment::

    reason_hash = keccak256(abi.encode(
        bytes32 salt,        // 32 random bytes, new for every event
        string  kind,        // "emr-node:break-glass:v1" or "emr-node:erasure:v1"
        string  reason,      // the text, exactly as sent (UTF-8)
        address approvedBy,  // the approving clinician; address(0) for an erasure
        string  openedBy     // the name of the hospital API token that asked
    ))

Salt, reason, approver and token name stay off-chain in the hospital's directory. Whoever
is shown them (an auditor; the patient, for a break-glass on their records) recomputes the
hash and compares it with the event's: a changed reason, approver or token name no longer
matches, and without the salt a dictionary of reasons matches nothing.

Reasons stored before salting have no salt; they were committed as ``keccak256(reason)``
and still verify that way.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

BREAK_GLASS = "emr-node:break-glass:v1"
ERASURE = "emr-node:erasure:v1"
LEGACY = "unsalted"  # the kind shown for a reason committed as plain keccak256(reason)
ZERO_ADDRESS = "0x" + "00" * 20
SALT_BYTES = 32

_TYPES = ["bytes32", "string", "string", "address", "string"]


@dataclass(frozen=True, slots=True)
class ReasonCommitment:
    """A reason with everything needed to recompute its on-chain hash."""

    kind: str  # BREAK_GLASS, ERASURE, or LEGACY (then salt is None)
    reason: str
    salt: bytes | None  # None: a legacy, unsalted reason
    opened_by: str  # the hospital API token's name
    approved_by: str | None = None  # checksummed address of the approving clinician

    @property
    def reason_hash(self) -> bytes:
        return commitment_hash(self)


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (JSON can carry lone surrogates, UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def new_commitment(
    kind: str, reason: str, opened_by: str, approved_by: str | None = None
) -> ReasonCommitment:
    """A commitment to ``reason`` under a fresh random salt."""
    if kind not in (BREAK_GLASS, ERASURE):
        raise ValueError(f"unknown reason kind {kind!r}")
    return ReasonCommitment(kind, reason, secrets.token_bytes(SALT_BYTES), opened_by, approved_by)


def commitment_hash(c: ReasonCommitment) -> bytes:
    """The 32-byte hash that goes on-chain (see the module docstring for the formula)."""
    if c.salt is None:
        return keccak(text=c.reason)
    if len(c.salt) != SALT_BYTES:
        raise ValueError("a reason salt is 32 bytes")
    return keccak(
        encode(_TYPES, [c.salt, c.kind, c.reason, c.approved_by or ZERO_ADDRESS, c.opened_by])
    )


def verifies(c: ReasonCommitment, on_chain: bytes) -> bool:
    """Whether the disclosed commitment recomputes the hash found on-chain."""
    try:
        return hmac.compare_digest(commitment_hash(c), bytes(on_chain))
    except ValueError:
        return False
