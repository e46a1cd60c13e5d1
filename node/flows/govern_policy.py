"""Consortium-wide category policies of zero-knowledge reads (which clinician roles may ever
read a category, on top of the patient's consent) change only by a Consortium vote: a
member proposes that the Consortium call ``ZkAccessGate.setCategoryPolicy``, and the call
runs when a strict majority of members voted for it. No single hospital can open or close a
category on its own."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from node.chain.abc import ChainClientAPI
from node.chain.exceptions import ContractReverted
from node.chain.proposals import Proposal
from node.consent.typed_data import category_hash
from node.exceptions import Conflict, Forbidden, InvalidRequest, NotFound
from zk.credentials import roles_mask
from zk.exceptions import InputError

SET_CATEGORY_POLICY = function_signature_to_4byte_selector("setCategoryPolicy(bytes32,uint16)")
MAX_CATEGORY_LENGTH = 200


def set_category_policy_call(category: bytes, mask: int) -> bytes:
    """Calldata of ``ZkAccessGate.setCategoryPolicy(category, mask)``."""
    return SET_CATEGORY_POLICY + encode(["bytes32", "uint16"], [category, mask])


def decode_set_category_policy(data: bytes) -> tuple[bytes, int] | None:
    """(category hash, mask) of a ``setCategoryPolicy`` calldata; None for another call."""
    if data[:4] != SET_CATEGORY_POLICY or len(data) != 4 + 64:
        return None
    try:
        category, mask = decode(["bytes32", "uint16"], data[4:])
    except Exception:  # not a well-formed setCategoryPolicy call
        return None
    return bytes(category), int(mask)


@dataclass(frozen=True, slots=True)
class PolicyProposal:
    proposal: Proposal
    category: bytes
    mask: int


def _meaning(err: ContractReverted) -> Exception:
    """A Consortium refusal as a node error (the HTTP layer knows what each means)."""
    if err.name == "ConsortiumUnknownProposal":
        return NotFound("no such proposal")
    if err.name == "ConsortiumNotMember":
        return Forbidden("this node's hospital is not a current Consortium member")
    if err.name == "ConsortiumAlreadyVoted":
        return Conflict("this hospital already voted for this proposal")
    if err.name == "ConsortiumProposalExecuted":
        return Conflict("the proposal was already executed")
    if err.name == "ConsortiumProposalExpired":
        return Conflict("the proposal expired (7 days without a majority)")
    if err.name == "ConsortiumInvalidCallTarget":
        return InvalidRequest("the call target is not a contract")
    return InvalidRequest(
        f"the proposal's call was refused by the contract ({err}); nothing changed"
    )


def _check_category(category: str) -> None:
    if not category or len(category) > MAX_CATEGORY_LENGTH:
        raise InvalidRequest(f"category: 1 to {MAX_CATEGORY_LENGTH} characters")


def propose_category_policy(
    category: str, roles: Sequence[str], *, chain: ChainClientAPI, gate: str
) -> PolicyProposal:
    """Propose (with this hospital's vote) that ``category`` be readable with a proof by
    ``roles`` (empty: by nobody). Executes at once only if this hospital alone is a strict
    majority of the members."""
    _check_category(category)
    try:
        mask = roles_mask(list(roles))
    except InputError as err:
        raise InvalidRequest(f"roles: {err}") from None
    h = category_hash(category)
    try:
        proposal_id, _executed = chain.propose_call(
            gate, set_category_policy_call(h, mask), f"zk category policy {category!r}"
        )
    except ContractReverted as err:
        raise _meaning(err) from err
    proposal = chain.proposal(proposal_id)
    assert proposal is not None  # just created
    return PolicyProposal(proposal, h, mask)


def policy_proposals(
    category: str, *, chain: ChainClientAPI, gate: str, open_only: bool = True
) -> list[PolicyProposal]:
    """Call proposals that would set ``category``'s policy on ``gate``, oldest first."""
    _check_category(category)
    h = category_hash(category)
    now = int(time.time())
    found = []
    for p in chain.call_proposals(gate, data_prefix=SET_CATEGORY_POLICY + h):
        decoded = decode_set_category_policy(p.data or b"")
        if decoded is None or decoded[0] != h:
            continue
        if open_only and p.state(now) != "open":
            continue
        found.append(PolicyProposal(p, h, decoded[1]))
    return found


def vote_proposal(proposal_id: int, *, chain: ChainClientAPI) -> Proposal:
    """Vote for a proposal as this hospital; the proposal as it stands after the vote."""
    if chain.proposal(proposal_id) is None:
        raise NotFound("no such proposal")
    try:
        chain.vote(proposal_id)
    except ContractReverted as err:
        raise _meaning(err) from err
    proposal = chain.proposal(proposal_id)
    assert proposal is not None
    return proposal


def get_proposal(proposal_id: int, *, chain: ChainClientAPI) -> Proposal:
    proposal = chain.proposal(proposal_id)
    if proposal is None:
        raise NotFound("no such proposal")
    return proposal


__all__ = [
    "PolicyProposal",
    "decode_set_category_policy",
    "get_proposal",
    "policy_proposals",
    "propose_category_policy",
    "set_category_policy_call",
    "vote_proposal",
]
