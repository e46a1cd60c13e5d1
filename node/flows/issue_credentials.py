"""Issue and revoke clinicians' zero-knowledge credentials.

The clinician hands over only an identity commitment (``Poseidon1(secret)``). The role and
the licence expiry come from this hospital's clinician directory, and CredentialRegistry
builds the leaf itself from (identity commitment, the sender's Consortium member id, role,
expiry): neither the clinician nor the API caller chooses an attribute, and no member can
issue under another member's id.

Revocation needs the leaf's preimage and its Merkle proof, which the node's mirror of the
tree holds. The issuing hospital may revoke (its rights follow a signing-key rotation: the
member id moves with it), and any member may revoke the credentials of a member that was
removed from the consortium.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from node.chain.abc import ChainClientAPI, ZkGateAPI
from node.chain.models import TxResult
from node.directory import ClinicianDirectoryAPI
from node.exceptions import Conflict, Forbidden, InvalidRequest, NotFound
from node.zkaccess.credential_mirror import CredentialMirror, LiveCredential
from zk.credentials import MAX_TIME, ROLES, credential_attributes, credential_leaf, role_index
from zk.exceptions import InputError
from zk.field import R

MAX_ISSUE_BATCH = 32


@dataclass(frozen=True, slots=True)
class IssueRequest:
    identity_commitment: int
    clinician: str  # checksummed address in this hospital's directory


@dataclass(frozen=True, slots=True)
class IssuedLeaf:
    clinician: str
    credential: LiveCredential
    root: int
    tx: TxResult


@dataclass(frozen=True, slots=True)
class RevokedLeaf:
    credential: LiveCredential
    root: int
    tx: TxResult


def _attributes(
    request: IssueRequest, directory: ClinicianDirectoryAPI, now: int
) -> tuple[int, int]:
    """(role index, licence expiry) of the clinician, from the directory only."""
    clinician = directory.clinician(request.clinician)
    if clinician is None:
        raise InvalidRequest(f"clinician {request.clinician} is not in this hospital's directory")
    try:
        role = role_index(clinician.role)
    except InputError:
        raise InvalidRequest(
            f"clinician {request.clinician} has the role {clinician.role!r}, which no credential "
            f"can carry (one of: {', '.join(ROLES)})"
        ) from None
    expiry = clinician.licence_expiry
    if expiry is None:
        raise InvalidRequest(
            f"clinician {request.clinician} has no licence expiry in the directory "
            "(POST /clinicians with licence_expiry)"
        )
    if not now < expiry < MAX_TIME:
        raise InvalidRequest(f"clinician {request.clinician}'s licence has expired")
    return role, expiry


def issue_credentials(
    requests: Sequence[IssueRequest],
    *,
    directory: ClinicianDirectoryAPI,
    chain: ChainClientAPI,
    gate: ZkGateAPI,
    mirror: CredentialMirror,
    now: int | None = None,
) -> list[IssuedLeaf]:
    """Issue one credential per request in one transaction (one new root); return each
    leaf as the registry built it. Raises ``InvalidRequest`` for a bad commitment, a
    clinician unknown to the directory, without a usable role or with an expired licence,
    and ``Conflict`` for a credential that exists already."""
    if not 0 < len(requests) <= MAX_ISSUE_BATCH:
        raise InvalidRequest(f"issue 1 to {MAX_ISSUE_BATCH} credentials per request")
    now = int(time.time()) if now is None else now
    commitments = [r.identity_commitment for r in requests]
    if any(not 0 < c < R for c in commitments):
        raise InvalidRequest("identity_commitment must be a nonzero field element")
    if len(set(commitments)) != len(commitments):
        raise InvalidRequest("identity_commitment: duplicates in the request")
    attributes = [_attributes(r, directory, now) for r in requests]
    hospital_id = chain.member_id(chain.hospital)
    if hospital_id == 0 or not chain.is_member(chain.hospital):
        raise Forbidden("this node's hospital is not a consortium member")
    leaves = [
        credential_leaf(c, credential_attributes(hospital_id, role, expiry))
        for c, (role, expiry) in zip(commitments, attributes, strict=True)
    ]
    mirror.sync()
    for leaf in leaves:
        if mirror.credential(leaf) is not None:
            raise Conflict("this credential (identity, role, licence expiry) is already issued")
    tx = gate.issue_credentials(
        commitments, [role for role, _e in attributes], [expiry for _r, expiry in attributes]
    )
    mirror.sync()
    root = mirror.root
    issued = []
    for request, leaf in zip(requests, leaves, strict=True):
        credential = mirror.credential(leaf)
        if credential is None:  # the registry built another leaf than the node expects
            raise Conflict("the registry did not issue the expected leaf; the node is stale")
        issued.append(IssuedLeaf(request.clinician, credential, root, tx))
    return issued


def _revoke(
    credential: LiveCredential, *, gate: ZkGateAPI, mirror: CredentialMirror
) -> RevokedLeaf:
    live, proof = mirror.proof(credential.leaf)
    tx = gate.revoke_credential(
        live.identity_commitment, live.hospital_id, live.role, live.expiry, proof.siblings
    )
    mirror.sync()
    return RevokedLeaf(live, mirror.root, tx)


def revoke_credential(
    leaf: int, *, chain: ChainClientAPI, gate: ZkGateAPI, mirror: CredentialMirror
) -> RevokedLeaf:
    """Revoke one live credential. Allowed for its issuer (by member id, so after a key
    rotation too) and for any member when the issuer is no longer a member. Raises
    ``NotFound`` for a leaf that is not live and ``Forbidden`` otherwise."""
    mirror.sync()
    credential = mirror.credential(leaf)
    if credential is None:
        raise NotFound("no live credential has this leaf")
    own = chain.member_id(chain.hospital)
    if credential.hospital_id != own and _issuer_is_member(credential.hospital_id, chain):
        raise Forbidden(
            "only the issuing hospital may revoke this credential while it is a member "
            "(or the consortium, by a vote)"
        )
    return _revoke(credential, gate=gate, mirror=mirror)


def revoke_member_credentials(
    hospital: str, *, chain: ChainClientAPI, gate: ZkGateAPI, mirror: CredentialMirror
) -> list[RevokedLeaf]:
    """Revoke every live credential issued by ``hospital`` (an address it had), which must
    have been removed from the consortium. Raises ``NotFound`` for an address that never
    was a member and ``Forbidden`` while it (or the address it rotated to) is a member."""
    hospital_id = chain.member_id(hospital)
    if hospital_id == 0:
        raise NotFound("this address never was a consortium member")
    if _issuer_is_member(hospital_id, chain):
        raise Forbidden(
            "this hospital is still a consortium member: it revokes its own credentials "
            "(or the consortium, by a vote)"
        )
    mirror.sync()
    return [_revoke(c, gate=gate, mirror=mirror) for c in mirror.credentials_of(hospital_id)]


def _issuer_is_member(hospital_id: int, chain: ChainClientAPI) -> bool:
    """Whether a current member holds member id ``hospital_id`` (the registry's rule: a
    removed hospital re-admitted later holds a new id, and nobody the old one)."""
    address = chain.member_address(hospital_id)
    return (
        address is not None and chain.is_member(address) and chain.member_id(address) == hospital_id
    )
