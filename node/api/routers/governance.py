"""Consortium governance through this node: see a proposal, propose a membership change
(admit or remove a hospital), vote for a proposal as this hospital."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Path

from node.api.deps import ChainDep, HospitalDep, OptionalZkDep
from node.api.schemas.common import to_hex
from node.api.schemas.governance import (
    AdmitProposalIn,
    MembershipProposalIn,
    PolicyCallOut,
    ProposalOut,
)
from node.chain.abc import ChainClientAPI
from node.chain.proposals import Proposal
from node.flows.govern_membership import propose_membership, revoke_after_removal
from node.flows.govern_policy import decode_set_category_policy, get_proposal, vote_proposal
from node.zkaccess.service import ZkAccessService
from zk.credentials import ROLES

router = APIRouter(prefix="/governance", tags=["governance"])

ProposalId = Path(ge=1, lt=2**256, description="Consortium proposal id (ids start at 1)")


def role_names(mask: int) -> list[str]:
    return [ROLES[i] if i < len(ROLES) else f"role{i}" for i in range(16) if mask >> i & 1]


def proposal_out(p: Proposal) -> ProposalOut:
    policy = None
    if p.data is not None:
        decoded = decode_set_category_policy(p.data)
        if decoded is not None:
            policy = PolicyCallOut(
                category_hash=to_hex(decoded[0]),
                allowed_roles=decoded[1],
                roles=role_names(decoded[1]),
            )
    return ProposalOut(
        id=p.proposal_id,
        kind=p.kind_name,
        state=p.state(int(time.time())),
        subject=p.subject,
        proposer=p.proposer,
        created_at=p.created_at,
        expires_at=p.expires_at,
        votes=p.votes,
        votes_needed=p.member_count // 2 + 1,
        member_count=p.member_count,
        executed=p.executed,
        target=p.target,
        data=to_hex(p.data) if p.data is not None else None,
        description=p.description,
        policy=policy,
    )


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "chain unreachable"}}


@router.get(
    "/proposals/{proposal_id}",
    response_model=ProposalOut,
    responses={
        404: {"description": "no proposal with this id"},
        422: {"description": "the id is not a positive integer"},
        **_UNAVAILABLE,
    },
    summary="A Consortium proposal: kind, call, votes and state (anyone)",
)
def proposal(chain: ChainDep, proposal_id: int = ProposalId) -> ProposalOut:
    return proposal_out(get_proposal(proposal_id, chain=chain))


@router.post(
    "/proposals/{proposal_id}/vote",
    response_model=ProposalOut,
    responses={
        400: {"description": "the majority's call was refused by its target; nothing changed"},
        401: {"description": "no API token"},
        403: {"description": "not a hospital token, or this hospital is no longer a member"},
        404: {"description": "no proposal with this id"},
        409: {"description": "already voted by this hospital, executed, or expired"},
        422: {"description": "the id is not a positive integer"},
        **_UNAVAILABLE,
    },
    summary="Vote for a proposal as this node's hospital (hospital token)",
    description="The vote is this hospital's (the node signs it). When it makes a strict "
    "majority of the current members, the proposal executes in the same transaction "
    "(`state` executed); an executed removal also revokes the removed hospital's ZK "
    "credentials from this node (`revoked_credentials`).",
)
def vote(
    chain: ChainDep, zk: OptionalZkDep, _caller: HospitalDep, proposal_id: int = ProposalId
) -> ProposalOut:
    return _executed(vote_proposal(proposal_id, chain=chain), chain, zk)


def _executed(p: Proposal, chain: ChainClientAPI, zk: ZkAccessService | None) -> ProposalOut:
    """The proposal as answered; a removal executed now also revokes the removed
    hospital's ZK credentials from this node."""
    out = proposal_out(p)
    out.revoked_credentials = revoke_after_removal(
        p, chain=chain, gate=zk.gate if zk else None, mirror=zk.mirror if zk else None
    )
    return out


@router.post(
    "/proposals",
    response_model=ProposalOut,
    status_code=201,
    responses={
        400: {"description": "an invalid proposal"},
        401: {"description": "no API token"},
        403: {"description": "not a hospital token, or this hospital is not a member"},
        409: {
            "description": "the change does not apply: admitting a member, removing a "
            "non-member or the last member"
        },
        422: {
            "description": "malformed body: kind, subject address, an admission without a "
            "name (1 to 100 characters, not only blanks) or a removal with one"
        },
        **_UNAVAILABLE,
    },
    summary="Propose to admit or remove a hospital, with this hospital's vote (hospital token)",
    description="Membership changes by a strict majority of the current members: the other "
    "members vote with `POST /governance/proposals/{id}/vote` at their own nodes. When this "
    "hospital's vote alone is a majority, the proposal executes at once (`state` executed; "
    "an executed removal also revokes the removed hospital's ZK credentials).",
)
def propose(
    body: MembershipProposalIn, chain: ChainDep, zk: OptionalZkDep, _caller: HospitalDep
) -> ProposalOut:
    name = body.name if isinstance(body, AdmitProposalIn) else None
    proposal = propose_membership(body.kind, body.subject, name, chain=chain)
    return _executed(proposal, chain, zk)
