"""Signing-key rotation: the hospital's address is its Consortium membership, so a new key
takes over only through governance.

1. The key store creates a new key pair, kept beside the current one (``rotate_signer``).
2. The current key proposes ``Rotate(new address)``; in a one-member consortium that
   executes at once, otherwise the other members vote (``emr-node`` of each hospital, or
   any wallet) and the node finishes later (:func:`finish_signer_rotation`, run by a worker).
3. Once the new address is a member, the chain client moves the old account's balance to it
   and sends as the new key (nonce re-read), and the old key is destroyed.

Until step 3 the node goes on signing with the old key, which is still the member: no
transaction is ever sent by an account that is not a member. Between the vote and step 3 the
old key's sends are refused on-chain (it is no longer a member); the batched workers retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hsm.abc import KeyStoreAPI
from node.chain.abc import ChainClientAPI

__all__ = ["SignerRotation", "finish_signer_rotation", "start_signer_rotation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignerRotation:
    old_address: str
    new_address: str
    proposal_id: int | None  # None: resumed after the proposal was already executed
    completed: bool  # the node now signs with the new key; the old one is destroyed


def start_signer_rotation(
    keys: KeyStoreAPI, chain: ChainClientAPI, *, move_funds: bool = True
) -> SignerRotation:
    """Create the new key (or reuse the pending one), propose the rotation, and finish it
    if the proposal executed at once."""
    old = chain.hospital
    new = keys.rotate_signer()
    proposal_id: int | None = None
    if not chain.is_member(new.address):
        proposal_id, executed = chain.propose_rotation(new.address)
        log.info(
            "proposed moving membership %s -> %s (proposal %d, executed: %s)",
            old,
            new.address,
            proposal_id,
            executed,
        )
    completed = finish_signer_rotation(keys, chain, move_funds=move_funds)
    return SignerRotation(old, new.address, proposal_id, completed)


def finish_signer_rotation(
    keys: KeyStoreAPI, chain: ChainClientAPI, *, move_funds: bool = True
) -> bool:
    """If a pending key's address is now a member, switch the chain client to it and
    destroy the old key; return whether a rotation completed. Idempotent and cheap when
    nothing is pending."""
    pending = keys.pending_signer()
    if pending is None or not chain.is_member(pending.address):
        return False
    chain.switch_signer(pending, move_funds=move_funds)
    keys.commit_signer()
    log.info("signing key rotated: the node now signs as %s", pending.address)
    return True
