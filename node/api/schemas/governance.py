"""Consortium governance: proposals, votes, and category-policy proposals."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from node.api.schemas.common import Address
from zk.credentials import ROLES

# A clinician role by name; an unknown name is refused with 400 naming it.
RoleName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(ROLES)})]


class PolicyCallOut(BaseModel):
    """What a ZkAccessGate.setCategoryPolicy call proposal would set."""

    category_hash: str
    allowed_roles: int
    roles: list[str]


class ProposalOut(BaseModel):
    id: int
    kind: str = Field(description="admit | remove | rotate | call")
    state: str = Field(description="open | executed | expired")
    subject: str = Field(description="the member concerned, or the call's target contract")
    proposer: str
    created_at: int
    expires_at: int
    votes: int = Field(description="votes of current members")
    votes_needed: int = Field(description="a strict majority of the current members")
    member_count: int
    executed: bool
    target: str | None = None
    data: str | None = Field(None, description="the call's calldata (call proposals)")
    description: str | None = None
    policy: PolicyCallOut | None = Field(
        None, description="decoded, when the call sets a ZK category policy"
    )
    revoked_credentials: int | None = Field(
        None,
        description="a removal this request executed: how many ZK credentials of the removed "
        "hospital this node revoked at once (null otherwise, or if that failed: "
        "POST /zk/credentials/revoke-member retries)",
    )


class PolicyProposalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[RoleName] = Field(
        max_length=16,
        description="clinician roles allowed to read the category with a proof "
        "(empty: nobody); the patient's consent must still name the reader's class",
    )


class PolicyProposalOut(BaseModel):
    category: str
    category_hash: str
    proposed_roles: list[str]
    proposed_mask: int
    allowed_roles: int = Field(description="the category's policy mask now")
    roles: list[str] = Field(description="the roles the policy allows now")
    proposal: ProposalOut


class CategoryPolicyOut(BaseModel):
    category: str
    category_hash: str
    allowed_roles: int
    roles: list[str]
    proposals: list[ProposalOut] = Field(
        description="open proposals to change this category's policy"
    )


class AdmitProposalIn(BaseModel):
    """Admit a hospital: its node's signing address and its name."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["admit"]
    subject: Address = Field(description="the hospital's node address (its signing account)")
    # Something other than blanks: the name is what members see when they vote.
    name: str = Field(min_length=1, max_length=100, pattern=r"\S", description="its name")


class RemoveProposalIn(BaseModel):
    """Remove a member hospital."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["remove"]
    subject: Address = Field(description="the member's node address (its signing account)")


MembershipProposalIn = Annotated[AdmitProposalIn | RemoveProposalIn, Field(discriminator="kind")]
