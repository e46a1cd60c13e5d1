"""EIP-712 typed data of a RecoverableWallet: what guardians and owners sign.

The domain is the wallet's own (each wallet is its own verifying contract), so an approval
for one wallet is worthless for another. GET /wallets/{address}/typed-data publishes it.
"""

from __future__ import annotations

from typing import Any

from eth_account.messages import encode_typed_data
from eth_utils import keccak

from node.consent.typed_data import EIP712_DOMAIN_TYPE

DOMAIN_NAME = "RecoverableWallet"
DOMAIN_VERSION = "1"

APPROVE_RECOVERY_TYPE = [
    {"name": "newOwner", "type": "address"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
CANCEL_RECOVERY_TYPE = [
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
PRIMARY_TYPES = {"ApproveRecovery": APPROVE_RECOVERY_TYPE, "CancelRecovery": CANCEL_RECOVERY_TYPE}


def wallet_domain(chain_id: int, wallet: str) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": wallet,
    }


def full_message(primary_type: str, message: dict[str, Any], dom: dict[str, Any]) -> dict[str, Any]:
    """The complete ``eth_signTypedData_v4`` payload for an ApproveRecovery or CancelRecovery."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, primary_type: PRIMARY_TYPES[primary_type]},
        "primaryType": primary_type,
        "domain": dom,
        "message": message,
    }


def digest(primary_type: str, message: dict[str, Any], dom: dict[str, Any]) -> bytes:
    """The 32-byte EIP-712 hash a signer signs (``\\x19\\x01 || domainSeparator || structHash``)."""
    signable = encode_typed_data(full_message=full_message(primary_type, message, dom))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)
