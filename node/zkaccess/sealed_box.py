"""Encrypt a record to a requester's ephemeral X25519 key (ECIES: X25519 + HKDF-SHA256 +
AES-256-GCM).

A zero-knowledge read carries no identity to encrypt to: the proof's signal binds a fresh
X25519 public key, and the node returns the record sealed to that key, so only the prover
(who holds the private half) can open it, whoever relays or logs the response.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_INFO = b"emr-node zk-read v1"


class SealedBoxError(ValueError):
    """The box is malformed, or was not sealed to this key for this context."""


@dataclass(frozen=True, slots=True)
class SealedBox:
    ephemeral_public: bytes  # the node's one-time X25519 public key (32 bytes)
    nonce: bytes  # 12 bytes
    ciphertext: bytes  # AES-256-GCM ciphertext with its 16-byte tag

    def to_json(self) -> dict[str, str]:
        return {
            "ephemeral_public": "0x" + self.ephemeral_public.hex(),
            "nonce": "0x" + self.nonce.hex(),
            "ciphertext": "0x" + self.ciphertext.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> SealedBox:
        try:
            box = cls(
                bytes.fromhex(data["ephemeral_public"].removeprefix("0x")),
                bytes.fromhex(data["nonce"].removeprefix("0x")),
                bytes.fromhex(data["ciphertext"].removeprefix("0x")),
            )
        except (KeyError, AttributeError, TypeError, ValueError) as err:
            raise SealedBoxError("malformed sealed box") from err
        if len(box.ephemeral_public) != 32 or len(box.nonce) != 12 or len(box.ciphertext) < 16:
            raise SealedBoxError("malformed sealed box")
        return box


def public_key_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key(shared: bytes, sender_public: bytes, recipient_public: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=sender_public + recipient_public,
        info=_INFO + context,
    ).derive(shared)


def check_recipient(recipient_public: bytes) -> None:
    """Raise ``SealedBoxError`` unless a box can be sealed to ``recipient_public`` (32 bytes,
    not a low-order point): checked before a read spends anything on-chain."""
    if len(recipient_public) != 32:
        raise SealedBoxError("an X25519 public key is 32 bytes")
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(recipient_public))
    except ValueError as err:
        raise SealedBoxError("unusable X25519 public key") from err


def seal(recipient_public: bytes, plaintext: bytes, context: bytes) -> SealedBox:
    """Encrypt ``plaintext`` so that only the holder of ``recipient_public``'s private key
    can read it; ``context`` (e.g. the record id) is authenticated, not encrypted."""
    if len(recipient_public) != 32:
        raise SealedBoxError("an X25519 public key is 32 bytes")
    try:
        recipient = X25519PublicKey.from_public_bytes(recipient_public)
        ephemeral = X25519PrivateKey.generate()
        shared = ephemeral.exchange(recipient)
    except ValueError as err:  # a low-order point gives an all-zero shared secret
        raise SealedBoxError("unusable X25519 public key") from err
    eph_public = public_key_bytes(ephemeral)
    key = _key(shared, eph_public, recipient_public, context)
    nonce = os.urandom(12)
    return SealedBox(eph_public, nonce, AESGCM(key).encrypt(nonce, plaintext, context))


def open_box(private_key: X25519PrivateKey, box: SealedBox, context: bytes) -> bytes:
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(box.ephemeral_public))
        key = _key(shared, box.ephemeral_public, public_key_bytes(private_key), context)
        return AESGCM(key).decrypt(box.nonce, box.ciphertext, context)
    except (ValueError, InvalidTag) as err:
        raise SealedBoxError("the box was not sealed to this key for this context") from err
