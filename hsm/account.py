"""An eth-account ``BaseAccount`` that signs through any SignerAPI.

eth-account's ``LocalAccount`` needs the private key in process; ``SignerAccount`` only
needs a ``sign_digest`` (software key, PKCS#11 HSM), and produces the same
``SignedTransaction`` / ``SignedMessage`` values, so web3's signing middleware and contract
helpers accept it unchanged.
"""

from __future__ import annotations

from typing import Any, cast

from eth_account._utils.legacy_transactions import (
    Transaction,
    UnsignedTransaction,
    encode_transaction,
    serializable_unsigned_transaction_from_dict,
)
from eth_account._utils.signing import to_eth_v
from eth_account.datastructures import SignedMessage, SignedTransaction
from eth_account.messages import SignableMessage, _hash_eip191_message, encode_typed_data
from eth_account.signers.base import BaseAccount
from eth_account.typed_transactions import TypedTransaction
from eth_account.types import Blobs, TransactionDictType
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from eth_typing import ChecksumAddress, Hash32
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

from hsm.abc import EcdsaSignature, SignerAPI
from hsm.exceptions import HSMError

__all__ = ["SignerAccount"]

_LEGACY_V_OFFSET = 27


class SignerAccount(BaseAccount):
    """A web3 / eth-account account whose key stays behind ``signer``."""

    def __init__(self, signer: SignerAPI) -> None:
        self._signer = signer
        self._address = cast(ChecksumAddress, to_checksum_address(signer.address))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self._address})"

    @property
    def address(self) -> ChecksumAddress:
        return self._address

    @property
    def signer(self) -> SignerAPI:
        """The SignerAPI this account signs with."""
        return self._signer

    def _sign(self, digest: bytes) -> EcdsaSignature:
        sig = self._signer.sign_digest(digest)
        r, s, y_parity = sig.r, sig.s, sig.y_parity
        # SignerAPI promises low s and the right parity; an HSM backend that slips would
        # make nodes reject the transaction (high s) or attribute a message to another
        # address (wrong parity), so normalise and check by recovery before releasing it.
        if s > SECPK1_N // 2:
            s, y_parity = SECPK1_N - s, y_parity ^ 1
        try:
            public_key = keys.Signature(vrs=(y_parity, r, s)).recover_public_key_from_msg_hash(
                digest
            )
        except Exception:
            raise HSMError("signer returned an invalid signature") from None
        if public_key.to_checksum_address() != self._address:
            raise HSMError("signer returned a signature that does not recover to its address")
        return EcdsaSignature(r=r, s=s, y_parity=y_parity)

    def unsafe_sign_hash(self, message_hash: Hash32) -> SignedMessage:
        digest = HexBytes(message_hash)
        if len(digest) != 32:
            raise ValueError("The message hash must be exactly 32-bytes")
        sig = self._sign(bytes(digest))
        v = sig.y_parity + _LEGACY_V_OFFSET
        return SignedMessage(
            message_hash=digest,
            r=sig.r,
            s=sig.s,
            v=v,
            signature=HexBytes(sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([v])),
        )

    def sign_message(self, signable_message: SignableMessage) -> SignedMessage:
        return self.unsafe_sign_hash(_hash_eip191_message(signable_message))

    def sign_typed_data(
        self,
        domain_data: dict[str, Any] | None = None,
        message_types: dict[str, Any] | None = None,
        message_data: dict[str, Any] | None = None,
        full_message: dict[str, Any] | None = None,
    ) -> SignedMessage:
        """Sign an EIP-712 message (same arguments as ``LocalAccount.sign_typed_data``)."""
        signable = encode_typed_data(domain_data, message_types, message_data, full_message)
        return self.unsafe_sign_hash(_hash_eip191_message(signable))

    def sign_transaction(
        self, transaction_dict: TransactionDictType, blobs: Blobs | None = None
    ) -> SignedTransaction:
        """Sign a legacy (EIP-155 or pre-155) or typed (EIP-2718) transaction dict.

        A ``from`` field is allowed only if it names this account, as in eth-account.
        """
        tx = dict(transaction_dict)
        if "from" in tx:
            sender = tx.pop("from")
            if to_checksum_address(sender) != self._address:
                raise TypeError(f"from field must match key's {self._address}")
        unsigned = serializable_unsigned_transaction_from_dict(
            cast(TransactionDictType, tx), blobs=blobs
        )
        sig = self._sign(unsigned.hash())
        # The v encoding follows eth_account._utils.signing.sign_transaction_dict.
        if isinstance(unsigned, TypedTransaction):
            v = sig.y_parity  # typed transactions carry the bare y parity
        elif isinstance(unsigned, UnsignedTransaction):
            v = to_eth_v(sig.y_parity)  # pre-EIP-155: 27 / 28
        elif isinstance(unsigned, Transaction):
            v = to_eth_v(sig.y_parity, unsigned.v)  # EIP-155: the chain id sits in v
        else:  # pragma: no cover - eth-account returns one of the three
            raise TypeError(f"unknown transaction object {type(unsigned).__name__}")
        encoded = encode_transaction(unsigned, vrs=(v, sig.r, sig.s))
        return SignedTransaction(
            raw_transaction=HexBytes(encoded),
            hash=HexBytes(keccak(encoded)),
            r=sig.r,
            s=sig.s,
            v=v,
        )


def _register_with_web3() -> None:
    """Let ``SignAndSendRawMiddlewareBuilder.build(SignerAccount(...))`` accept the account.

    web3's middleware normalises keys with the ``to_account`` singledispatch, which only
    knows LocalAccount and raw keys.
    """
    try:
        from web3.middleware.signing import to_account
    except ImportError:  # web3 is optional for hsm users that only wrap keys
        return
    to_account.register(SignerAccount, lambda account: account)


_register_with_web3()
