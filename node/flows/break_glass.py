"""Break-glass: a member hospital opens time-limited emergency access, with a reason.

The reason text may describe a clinical situation, so only its keccak256 goes on-chain;
the text stays in the node's state DB for auditors, who can check it against the hash.
"""

from __future__ import annotations

from eth_utils import keccak

from node.chain.abc import ChainClientAPI
from node.chain.models import TxResult
from node.exceptions import InvalidRequest


def open_break_glass(
    patient: str,
    clinician: str,
    record_id: bytes | None,
    duration: int,
    reason: str,
    *,
    chain: ChainClientAPI,
    max_duration: int,
) -> tuple[TxResult, bytes]:
    """Open emergency access; return the transaction and the reason hash."""
    if not reason.strip():
        raise InvalidRequest("a break-glass reason is mandatory")
    if not 0 < duration <= max_duration:
        raise InvalidRequest(f"duration must be between 1 and {max_duration} seconds")
    reason_hash = keccak(text=reason)
    return chain.open_break_glass(patient, clinician, record_id, duration, reason_hash), reason_hash
