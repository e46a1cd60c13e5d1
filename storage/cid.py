"""Content identifiers of stored blobs.

Every blob is addressed by a CIDv1 with the ``raw`` codec (0x55), a sha2-256 multihash and
the base32 lower-case multibase (prefix ``b``): the same string Kubo prints for
``ipfs block put`` or ``ipfs add --cid-version=1 --raw-leaves`` of a single-chunk file, so the
local store and an IPFS backend agree on addresses.

Binary layout (36 bytes)::

    0x01 (CID version) | 0x55 (raw codec) | 0x12 (sha2-256) | 0x20 (32-byte digest) | digest

All four prefix fields are single-byte varints, so the prefix is constant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from storage.exceptions import StorageError

__all__ = ["InvalidCID", "cid_for", "cid_from_digest", "parse_cid"]

_PREFIX = bytes((0x01, 0x55, 0x12, 0x20))
_DIGEST_SIZE = 32
_MULTIBASE_BASE32 = "b"
# 36 bytes = 288 bits -> ceil(288 / 5) = 58 base32 characters, plus the multibase prefix.
_CID_LENGTH = 1 + 58
_BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class InvalidCID(StorageError, ValueError):
    """The string is not a CIDv1 / raw / sha2-256 / base32 content address.

    Also a ValueError: a malformed CID is bad input, not a backend failure.
    """


def cid_from_digest(digest: bytes) -> str:
    """Return the CID of a blob whose sha256 digest is ``digest``."""
    if len(digest) != _DIGEST_SIZE:
        raise ValueError("a sha2-256 digest is 32 bytes")
    encoded = base64.b32encode(_PREFIX + digest).decode("ascii").rstrip("=").lower()
    return _MULTIBASE_BASE32 + encoded


def cid_for(data: bytes) -> str:
    """Return the CID of ``data`` (CIDv1, raw codec, sha2-256, base32 lower-case)."""
    return cid_from_digest(hashlib.sha256(data).digest())


def parse_cid(cid: str) -> bytes:
    """Return the sha256 digest addressed by ``cid``.

    Only the canonical form produced by :func:`cid_for` is accepted (CIDv0 ``Qm...``,
    other codecs, hashes or multibases are rejected). Raises InvalidCID.
    """
    if not isinstance(cid, str):
        raise InvalidCID("a CID is a string")
    if len(cid) != _CID_LENGTH:
        raise InvalidCID(f"a raw sha2-256 CIDv1 is {_CID_LENGTH} characters, got {len(cid)}")
    if cid[0] != _MULTIBASE_BASE32:
        raise InvalidCID("expected the base32 lower-case multibase prefix 'b'")
    body = cid[1:]
    if not _BASE32_ALPHABET.issuperset(body):
        raise InvalidCID("not lower-case base32")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except binascii.Error as exc:
        raise InvalidCID("not valid base32") from exc
    if raw[: len(_PREFIX)] != _PREFIX:
        raise InvalidCID("not a CIDv1 with the raw codec and a sha2-256 multihash")
    digest = raw[len(_PREFIX) :]
    # 58 characters carry 290 bits for 288: reject non-zero padding bits so that each
    # blob has exactly one address (otherwise two strings would name the same file).
    if cid_from_digest(digest) != cid:
        raise InvalidCID("non-canonical base32 encoding")
    return digest
