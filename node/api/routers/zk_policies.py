"""Consortium-wide category policies of zero-knowledge reads: which clinician roles may ever
read a category with a proof (the patient's reader-class consent must name the reader too).
They change only by a Consortium vote: a hospital proposes, the members vote
(/governance/proposals/{id}/vote), and on a strict majority the Consortium itself calls
ZkAccessGate.setCategoryPolicy. No single hospital token can change a policy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from node.api.deps import ChainDep, HospitalDep, OptionalZkDep
from node.api.routers.governance import proposal_out, role_names
from node.api.schemas.common import to_hex
from node.api.schemas.governance import CategoryPolicyOut, PolicyProposalIn, PolicyProposalOut
from node.consent.typed_data import category_hash
from node.exceptions import NotFound
from node.flows.govern_policy import (
    MAX_CATEGORY_LENGTH,
    policy_proposals,
    propose_category_policy,
)
from node.zkaccess.service import ZkAccessService

router = APIRouter(prefix="/zk/policies", tags=["zero-knowledge", "governance"])

CategoryName = Annotated[
    str, Path(min_length=1, max_length=MAX_CATEGORY_LENGTH, description="a record category")
]


def _zk(zk: ZkAccessService | None) -> ZkAccessService:
    # Checked in the route, after the body: a malformed body answers 422 even when disabled.
    if zk is None:
        raise NotFound("zero-knowledge access is not enabled on this node")
    return zk


@router.post(
    "/{category}/proposals",
    response_model=PolicyProposalOut,
    status_code=202,
    responses={
        201: {
            "model": PolicyProposalOut,
            "description": "executed at once: this hospital alone is a strict majority",
        },
        202: {"description": "proposed with this hospital's vote; waiting for the others"},
        400: {"description": "unknown role, bad category name, or the call was refused"},
        401: {"description": "no API token"},
        403: {"description": "not a hospital token, or this hospital is not a member"},
        404: {"description": "zero-knowledge access is not enabled on this node"},
        422: {"description": "malformed body (roles must be a list of role names)"},
        503: {"description": "chain unreachable"},
    },
    summary="Propose a category's roles policy to the Consortium (hospital token)",
)
def propose(
    category: CategoryName,
    body: PolicyProposalIn,
    chain: ChainDep,
    zk_service: OptionalZkDep,
    _caller: HospitalDep,
    response: Response,
) -> PolicyProposalOut:
    zk = _zk(zk_service)
    made = propose_category_policy(category, body.roles, chain=chain, gate=zk.gate.gate_address)
    if made.proposal.executed:
        response.status_code = 201
    mask = zk.gate.category_policy(made.category)
    return PolicyProposalOut(
        category=category,
        category_hash=to_hex(made.category),
        proposed_roles=role_names(made.mask),
        proposed_mask=made.mask,
        allowed_roles=mask,
        roles=role_names(mask),
        proposal=proposal_out(made.proposal),
    )


@router.get(
    "/{category}",
    response_model=CategoryPolicyOut,
    responses={
        400: {"description": "bad category name"},
        404: {"description": "zero-knowledge access is not enabled on this node"},
        503: {"description": "chain unreachable"},
    },
    summary="A category's roles policy now and the open proposals to change it (anyone)",
)
def policy(category: CategoryName, chain: ChainDep, zk_service: OptionalZkDep) -> CategoryPolicyOut:
    zk = _zk(zk_service)
    proposals = policy_proposals(category, chain=chain, gate=zk.gate.gate_address)
    h = category_hash(category)
    mask = zk.gate.category_policy(h)
    return CategoryPolicyOut(
        category=category,
        category_hash=to_hex(h),
        allowed_roles=mask,
        roles=role_names(mask),
        proposals=[proposal_out(p.proposal) for p in proposals],
    )
