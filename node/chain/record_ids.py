"""Record ids, namespaced by hospital (RecordRegistry's rule).

A record id is 32 bytes: the Consortium member id of the hospital that creates it (4 bytes,
big-endian) and 28 random bytes. RecordRegistry lets only that member anchor the id and
tombstone it, so "the hospital that anchored a record" is read from the id itself, costs no
storage, and survives a signing-key rotation (the member id moves with the membership).
"""

from __future__ import annotations

import secrets

MEMBER_ID_BYTES = 4
_MAX_MEMBER_ID = 2 ** (8 * MEMBER_ID_BYTES) - 1

__all__ = ["MEMBER_ID_BYTES", "new_record_id", "record_member_id"]


def new_record_id(member_id: int) -> bytes:
    """A fresh random record id in member ``member_id``'s namespace.

    Raises ValueError unless 1 <= member_id < 2**32 (0 is no member's id).
    """
    if isinstance(member_id, bool) or not isinstance(member_id, int):
        raise ValueError("member id must be an integer")
    if not 1 <= member_id <= _MAX_MEMBER_ID:
        raise ValueError("member id out of range")
    return member_id.to_bytes(MEMBER_ID_BYTES, "big") + secrets.token_bytes(32 - MEMBER_ID_BYTES)


def record_member_id(record_id: bytes) -> int:
    """The member id whose namespace ``record_id`` is in (0: no member's)."""
    if len(record_id) != 32:
        raise ValueError("a record id is 32 bytes")
    return int.from_bytes(record_id[:MEMBER_ID_BYTES], "big")
