"""Sign-In with Ethereum (EIP-4361) messages.

The node issues the whole message and keeps it under its nonce; at login it accepts only
that exact text, so domain, URI, chain id and expiry are the node's own, not the caller's.
Domain and URI come from the node's configured public URL, never from the request (a
phishing site proxying to the node must not get a message that names itself).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct

from node.chain.abc import ContractSignaturesAPI

_NONCE_LINE = re.compile(r"^Nonce: ([A-Za-z0-9]{8,})$", re.MULTILINE)
_DOMAIN_LINE = re.compile(r"\A(\S+) wants you to sign in with your Ethereum account:\n")
STATEMENT = "Sign in to read medical records through this emr-node."


def new_nonce() -> str:
    return secrets.token_hex(16)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_message(
    *,
    domain: str,
    address: str,
    uri: str,
    chain_id: int,
    nonce: str,
    issued_at: int,
    expires_at: int,
) -> str:
    return (
        f"{domain} wants you to sign in with your Ethereum account:\n"
        f"{address}\n\n"
        f"{STATEMENT}\n\n"
        f"URI: {uri}\n"
        "Version: 1\n"
        f"Chain ID: {chain_id}\n"
        f"Nonce: {nonce}\n"
        f"Issued At: {_iso(issued_at)}\n"
        f"Expiration Time: {_iso(expires_at)}"
    )


def origin(public_url: str, domain: str | None = None) -> tuple[str, str]:
    """The (domain, URI) a sign-in message names: ``domain`` if configured, else the
    public URL's host[:port]; the URI is the public URL itself."""
    return domain or urlsplit(public_url).netloc, public_url


def domain_of(message: str) -> str | None:
    """The domain on a message's first line, or None when it has no EIP-4361 preamble."""
    match = _DOMAIN_LINE.match(message)
    return match.group(1) if match else None


def nonce_of(message: str) -> str | None:
    match = _NONCE_LINE.search(message)
    return match.group(1) if match else None


def recover_signer(message: str, signature: bytes) -> str | None:
    """Address that produced an EIP-191 ``personal_sign`` signature, or None if malformed."""
    try:
        return Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception:  # any malformed signature is simply "not signed by anyone"
        return None


def message_hash(message: str) -> bytes:
    """The EIP-191 ``personal_sign`` hash of ``message``: what a contract wallet is asked
    about (``isValidSignature(hash, signature)``)."""
    return bytes(_hash_eip191_message(encode_defunct(text=message)))


def signed_by(
    message: str,
    signature: bytes,
    address: str,
    *,
    contracts: ContractSignaturesAPI | None,
) -> bool:
    """Whether ``address`` signed ``message``: its own EIP-191 signature (an EOA), or, when
    it does not recover to ``address``, the answer of the contract at ``address`` (ERC-1271:
    the magic value for the message's EIP-191 hash; an account without code says no).
    Raises ``ChainUnavailable`` when a contract wallet would have to be asked and the chain
    is down."""
    if recover_signer(message, signature) == address:
        return True
    if contracts is None:
        return False
    return contracts.is_valid_signature(address, message_hash(message), signature)
