"""Consortium membership changes through this node: a member hospital proposes to admit a
new hospital (by its signing address and name) or to remove a member; the proposal carries
this hospital's vote and executes when a strict majority of the current members voted for
it (``vote_proposal`` in govern_policy). A hospital that is not a member can neither propose
nor vote.

When a removal executes through this node (its proposal or its vote made the majority), the
node at once revokes the ZK credentials the removed hospital issued: otherwise they would
keep verifying (the credential registry still holds them) until some member revoked them by
hand with ``POST /zk/credentials/revoke-member``, which stays the fallback."""

from __future__ import annotations

import logging
from typing import Literal

from node.chain.abc import ChainClientAPI, ZkGateAPI
from node.chain.exceptions import ChainError, ContractReverted
from node.chain.proposals import ADMIT, REMOVE, Proposal
from node.exceptions import Conflict, Forbidden, InvalidRequest, NodeError
from node.flows.issue_credentials import revoke_member_credentials
from node.zkaccess.credential_mirror import CredentialMirror

log = logging.getLogger(__name__)

MembershipKind = Literal["admit", "remove"]
MAX_NAME_LENGTH = 100


def propose_membership(
    kind: MembershipKind, subject: str, name: str | None, *, chain: ChainClientAPI
) -> Proposal:
    """Propose (with this hospital's vote) to admit ``subject`` as ``name``, or to remove
    member ``subject``. Raises InvalidRequest for an admission without a name or a removal
    with one, Conflict when the change does not apply (admitting a member, removing a
    non-member or the last member) and Forbidden when this hospital is not a member."""
    if kind == "admit":
        if name is None or not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise InvalidRequest(
                f"name: an admission names the hospital (1 to {MAX_NAME_LENGTH} characters)"
            )
        if chain.is_member(subject):
            raise Conflict("this address is already a member")
    else:
        if name is not None:
            raise InvalidRequest("name: only an admission takes a name")
        if not chain.is_member(subject):
            raise Conflict("this address is not a member")
    try:
        proposal_id, _executed = chain.propose_membership(
            ADMIT if kind == "admit" else REMOVE, subject, (name or "").strip()
        )
    except ContractReverted as err:
        if err.name == "ConsortiumNotMember":
            raise Forbidden("this node's hospital is not a current Consortium member") from err
        if err.name == "ConsortiumLastMember":
            raise Conflict("the last member cannot be removed") from err
        if err.name == "ConsortiumInvalidProposal":
            raise Conflict("the change does not apply to the membership as it is now") from err
        raise InvalidRequest(f"the proposal was refused by the contract ({err})") from err
    proposal = chain.proposal(proposal_id)
    assert proposal is not None  # just created
    return proposal


def revoke_after_removal(
    proposal: Proposal,
    *,
    chain: ChainClientAPI,
    gate: ZkGateAPI | None,
    mirror: CredentialMirror | None,
) -> int | None:
    """After ``proposal`` executed a removal: revoke every live credential the removed
    hospital issued; return how many (None: not a removal executed, no ZK service here, or
    the revocation failed: the vote stands, ``POST /zk/credentials/revoke-member`` retries)."""
    if proposal.kind_name != "remove" or not proposal.executed:
        return None
    if gate is None or mirror is None:
        return None
    try:
        revoked = revoke_member_credentials(proposal.subject, chain=chain, gate=gate, mirror=mirror)
    except (ChainError, NodeError) as err:
        log.warning(
            "removal of %s executed, but revoking its credentials failed (%s): "
            "POST /zk/credentials/revoke-member retries",
            proposal.subject,
            type(err).__name__,
        )
        return None
    log.info("revoked %d credentials of removed member %s", len(revoked), proposal.subject)
    return len(revoked)


__all__ = ["MAX_NAME_LENGTH", "MembershipKind", "propose_membership", "revoke_after_removal"]
