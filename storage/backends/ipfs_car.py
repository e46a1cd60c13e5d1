"""CARv1 encoder for batches of raw blocks (https://ipld.io/specs/transport/car/carv1/).

The IPFS blob store ships each write batch to a daemon as one CAR file sent to
``/api/v0/dag/import``: one HTTP request for a thousand blobs, the fastest write path
RECIPES.md measured on js-ipfs. Layout::

    varint(len(header)) | header                        header = dag-cbor {roots, version: 1}
    varint(36 + len(data)) | CID bytes (36) | data      once per block

Every block is also listed as a root. ``dag/import`` pins each root of the header
recursively (which, for a raw block, pins exactly that block), so every blob gets its own
pin and ``delete`` can unpin one blob without touching the rest of its batch. A single
dag-cbor root linking the batch would pin faster but tie every blob's lifetime to its batch.

Only the fragment of dag-cbor the header needs is encoded here (a two-key map, an array of
tag-42 CID links, a small integer); pulling in a CBOR library for it is not worth a
dependency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["encode_car", "raw_cid_bytes"]

# CIDv1 | raw codec (0x55) | sha2-256 (0x12) | 32-byte digest: see storage/cid.py.
_RAW_CID_PREFIX = bytes((0x01, 0x55, 0x12, 0x20))


def raw_cid_bytes(digest: bytes) -> bytes:
    """Return the binary CID of a raw blob whose sha256 digest is ``digest``."""
    return _RAW_CID_PREFIX + digest


def _varint(value: int) -> bytes:
    """Unsigned LEB128, the multiformats varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _cbor_head(major: int, length: int) -> bytes:
    """The initial bytes of a CBOR item (major type + argument), in shortest form as
    dag-cbor requires."""
    if length < 24:
        return bytes((major << 5 | length,))
    if length < 1 << 8:
        return bytes((major << 5 | 24, length))
    if length < 1 << 16:
        return bytes((major << 5 | 25,)) + length.to_bytes(2, "big")
    if length < 1 << 32:
        return bytes((major << 5 | 26,)) + length.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + length.to_bytes(8, "big")


def _cbor_text(text: str) -> bytes:
    raw = text.encode("ascii")
    return _cbor_head(3, len(raw)) + raw


def _cbor_link(cid: bytes) -> bytes:
    # dag-cbor encodes a CID as tag 42 over a byte string: 0x00 (identity multibase) + CID.
    return b"\xd8\x2a" + _cbor_head(2, len(cid) + 1) + b"\x00" + cid


def _header(roots: Sequence[bytes]) -> bytes:
    # Map keys in dag-cbor canonical order (shorter first): "roots" before "version".
    body = b"".join(
        (
            _cbor_head(5, 2),
            _cbor_text("roots"),
            _cbor_head(4, len(roots)),
            *(_cbor_link(cid) for cid in roots),
            _cbor_text("version"),
            _cbor_head(0, 1),
        )
    )
    return _varint(len(body)) + body


def encode_car(blocks: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Return a CARv1 holding ``(digest, data)`` raw blocks, each of them also a root.

    ``blocks`` must be non-empty and free of duplicates (a CAR may repeat a block, but a
    duplicate root would be pinned twice for nothing).
    """
    items = [(raw_cid_bytes(digest), data) for digest, data in blocks]
    if not items:
        raise ValueError("a CAR needs at least one block")
    parts = [_header([cid for cid, _ in items])]
    for cid, data in items:
        parts.append(_varint(len(cid) + len(data)))
        parts.append(cid)
        parts.append(data)
    return b"".join(parts)
