"""CredentialRegistry v2: leaves built on-chain from (idc, memberId(issuer), role, expiry),
a zk-kit LeanIMT whose root must equal zk.merkle.LeanIMT's after every operation, revocation
rights that follow rotations and survive removals, and the root history."""

from __future__ import annotations

import pytest
from contract_helpers import Chain
from web3.logs import DISCARD
from zk_helpers import (
    LICENCE,
    NURSE,
    PHYSICIAN,
    Zk,
    deploy_zk,
    expect_zk_revert,
    identity,
    issue,
    revoke,
    revoke_call_data,
    send,
)

from zk.credentials import IssuedCredential, credential_attributes, credential_leaf
from zk.field import R
from zk.merkle import LeanIMT

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def zk(chain: Chain) -> Zk:
    return deploy_zk(chain)


def _issued_events(zk: Zk, receipt: object) -> list[dict]:
    events = zk.registry.events.CredentialIssued().process_receipt(receipt, errors=DISCARD)
    return [dict(e["args"]) for e in events]


def _rotate(chain: Chain, old: str, new: str, voters: list[str]) -> None:
    c = chain.consortium.functions
    receipt = chain.send(c.propose(2, new, ""), old)
    (created,) = chain.consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    for v in voters:
        chain.send(c.vote(created["args"]["id"]), v)
    assert c.isMember(new).call() and not c.isMember(old).call()


def _remove(chain: Chain, member: str, voters: list[str]) -> None:
    c = chain.consortium.functions
    receipt = chain.send(c.propose(1, member, ""), voters[0])
    (created,) = chain.consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    for v in voters[1:]:
        chain.send(c.vote(created["args"]["id"]), v)
    assert not c.isMember(member).call()


def test_empty_registry(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    assert f.root().call() == 0 == LeanIMT().root
    assert f.size().call() == 0 and f.depth().call() == 0
    # root 0 (the empty tree) is never valid
    assert f.isValidRoot(0).call() is False
    assert f.isValidRoot(12345).call() is False
    assert f.ROOT_HISTORY().call() == 32 and f.MAX_DEPTH().call() == 20
    assert f.consortium().call() == chain.deployment.consortium


def test_issue_builds_the_leaf_from_the_issuers_member_id(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    nurse = identity("nurse")
    expiry = chain.now() + 365 * 86400
    receipt = send(chain, f.issueCredential(nurse.commitment, NURSE, expiry), chain.b)
    hospital_b = chain.consortium.functions.memberId(chain.b).call()
    assert hospital_b == 2
    leaf = credential_leaf(nurse.commitment, credential_attributes(hospital_b, NURSE, expiry))
    zk.tree.insert(leaf)
    root = f.root().call()
    assert root == zk.tree.root == leaf  # a one-leaf LeanIMT's root is the leaf
    assert _issued_events(zk, receipt) == [
        {
            "leaf": leaf,
            "identityCommitment": nurse.commitment,
            "hospitalId": hospital_b,
            "role": NURSE,
            "expiry": expiry,
            "index": 0,
            "root": root,
        }
    ]
    assert f.credentialLeaf(nurse.commitment, hospital_b, NURSE, expiry).call() == leaf
    assert f.has(leaf).call() and f.indexOf(leaf).call() == 0
    assert f.isValidRoot(root).call()
    # the leaf under another hospital's id (what b might have wished to issue) is not there
    for other in (1, 3):
        forged = credential_leaf(nurse.commitment, credential_attributes(other, NURSE, expiry))
        assert not f.has(forged).call()
    # nor a physician / longer-licence variant the clinician might prefer
    for role, exp in ((PHYSICIAN, expiry), (NURSE, 2**40 - 1)):
        forged = credential_leaf(nurse.commitment, credential_attributes(hospital_b, role, exp))
        assert not f.has(forged).call()


def test_a_member_cannot_issue_under_another_members_id(chain: Chain, zk: Zk) -> None:
    """There is no hospital argument: whatever a member sends, the leaf carries its own id.
    a issues for the same identity, role and expiry as b would: the leaves differ by id."""
    f = zk.registry.functions
    who = identity("clinician-x")
    by_a = issue(chain, zk, who, chain.a, PHYSICIAN)
    by_b = issue(chain, zk, who, chain.b, PHYSICIAN)
    assert (by_a.hospital_id, by_b.hospital_id) == (1, 2)
    assert by_a.leaf != by_b.leaf
    assert f.has(by_a.leaf).call() and f.has(by_b.leaf).call()
    # the ABI has no way to name a hospital when issuing
    abi = {i["name"]: i for i in zk.registry.abi if i.get("type") == "function"}
    for name in ("issueCredential", "issueCredentials"):
        assert [i["name"] for i in abi[name]["inputs"]] in (
            ["identityCommitment", "role", "expiry"],
            ["identityCommitments", "roles", "expiries"],
        )


def test_issue_rejections(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    idc = identity("someone").commitment
    future = chain.now() + 86400
    assert expect_zk_revert(
        lambda: f.issueCredential(idc, NURSE, future).transact({"from": chain.outsider}),
        "ConsortiumGatedNotMember",
    ) == (chain.outsider,)
    for bad in (0, R, 2**256 - 1):
        assert expect_zk_revert(
            lambda b=bad: f.issueCredential(b, NURSE, future).transact({"from": chain.a}),
            "CredentialRegistryInvalidCommitment",
        ) == (bad,)
    for role in (16, 255):
        assert expect_zk_revert(
            lambda r=role: f.issueCredential(idc, r, future).transact({"from": chain.a}),
            "CredentialRegistryInvalidRole",
        ) == (role,)
    now = chain.now()
    for expiry in (0, now - 1, now + 1):  # the next block is at least now + 1
        expect_zk_revert(
            lambda e=expiry: f.issueCredential(idc, NURSE, e).transact({"from": chain.a}),
            "CredentialRegistryInvalidExpiry",
        )
    send(chain, f.issueCredential(idc, NURSE, future), chain.a)
    zk.tree.insert(credential_leaf(idc, credential_attributes(1, NURSE, future)))
    args = expect_zk_revert(
        lambda: f.issueCredential(idc, NURSE, future).transact({"from": chain.a}),
        "CredentialRegistryDuplicate",
    )
    assert args == (zk.tree.leaves[0],)
    # the same identity with another role is another credential
    send(chain, f.issueCredential(idc, PHYSICIAN, future), chain.a)
    zk.tree.insert(credential_leaf(idc, credential_attributes(1, PHYSICIAN, future)))
    assert f.root().call() == zk.tree.root and f.size().call() == 2


def test_batch_issue_matches_the_reference_tree(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    expiry = chain.now() + 86400 * 30
    sizes = [1, 2, 3, 5, 8, 1, 13]
    for round_, n in enumerate(sizes):
        ids = [identity(f"batch-{round_}-{i}").commitment for i in range(n)]
        roles = [i % 16 for i in range(n)]
        issuer = (chain.a, chain.b, chain.c)[round_ % 3]
        hospital = round_ % 3 + 1
        first = zk.tree.size
        receipt = send(chain, f.issueCredentials(ids, roles, [expiry] * n), issuer)
        leaves = [
            credential_leaf(i, credential_attributes(hospital, r, expiry))
            for i, r in zip(ids, roles, strict=True)
        ]
        zk.tree.insert_many(leaves)
        root = f.root().call()
        assert root == zk.tree.root, f"round {round_}"
        assert f.depth().call() == zk.tree.depth and f.size().call() == zk.tree.size
        events = _issued_events(zk, receipt)
        assert [e["leaf"] for e in events] == leaves
        assert [e["index"] for e in events] == list(range(first, first + n))
        assert {e["root"] for e in events} == {root}
        assert {e["hospitalId"] for e in events} == {hospital}
        # single inserts in between
        issue(chain, zk, identity(f"single-{round_}"), issuer, NURSE)
    # every leaf's proof from the mirror verifies against the on-chain root
    on_chain = f.root().call()
    for index in range(zk.tree.size):
        proof = zk.tree.generate_proof(index)
        assert proof.root == on_chain and proof.verify()


def test_batch_rejections_are_all_or_nothing(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    expiry = chain.now() + 86400
    a, b = identity("a").commitment, identity("b").commitment
    for ids, roles, exps in (
        ([], [], []),
        ([a], [NURSE, NURSE], [expiry]),
        ([a, b], [NURSE, NURSE], [expiry]),
    ):
        expect_zk_revert(
            lambda i=ids, r=roles, e=exps: f.issueCredentials(i, r, e).transact({"from": chain.a}),
            "CredentialRegistryInvalidBatch",
        )
    expect_zk_revert(
        lambda: f.issueCredentials([a, a], [NURSE, NURSE], [expiry, expiry]).transact(
            {"from": chain.a}
        ),
        "CredentialRegistryDuplicate",
    )
    expect_zk_revert(
        lambda: f.issueCredentials([a, b], [NURSE, 16], [expiry, expiry]).transact(
            {"from": chain.a}
        ),
        "CredentialRegistryInvalidRole",
    )
    expect_zk_revert(
        lambda: f.issueCredentials([a, 0], [NURSE, NURSE], [expiry, expiry]).transact(
            {"from": chain.a}
        ),
        "CredentialRegistryInvalidCommitment",
    )
    expect_zk_revert(
        lambda: f.issueCredentials([a], [NURSE], [expiry]).transact({"from": chain.outsider}),
        "ConsortiumGatedNotMember",
    )
    assert f.size().call() == 0 and f.root().call() == 0


def test_issuer_revokes_and_history_restarts(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    creds = [issue(chain, zk, identity(f"c{i}"), chain.a, NURSE) for i in range(5)]
    roots = [zk.tree.root]
    assert f.isValidRoot(roots[0]).call()
    target = creds[2]
    index = zk.tree.index_of(target.leaf)
    receipt = revoke(chain, zk, target, chain.a)
    (event,) = zk.registry.events.CredentialRevoked().process_receipt(receipt, errors=DISCARD)
    new_root = f.root().call()
    assert dict(event["args"]) == {
        "leaf": target.leaf,
        "hospitalId": 1,
        "revokedBy": chain.a,
        "index": index,
        "root": new_root,
    }
    assert not f.has(target.leaf).call()
    expect_zk_revert(lambda: f.indexOf(target.leaf).call(), "CredentialRegistryUnknown")
    # a revocation invalidates every earlier root
    assert not f.isValidRoot(roots[0]).call()
    assert f.isValidRoot(new_root).call()
    # revoking again: unknown
    proof = zk.tree.generate_proof(index)
    fn = f.revokeCredential(
        target.identity.commitment, 1, NURSE, target.licence_expiry, list(proof.siblings)
    )
    expect_zk_revert(lambda: fn.transact({"from": chain.a}), "CredentialRegistryUnknown")
    # a wrong Merkle proof is refused by the library
    victim = creds[3]
    good = zk.tree.generate_proof(zk.tree.index_of(victim.leaf))
    bad = [*good.siblings]
    bad[0] = (bad[0] + 1) % R
    expect_zk_revert(
        lambda: f.revokeCredential(
            victim.identity.commitment, 1, NURSE, victim.licence_expiry, bad
        ).transact({"from": chain.a}),
        "WrongSiblingNodes",
    )
    # other members cannot revoke a live member's credential
    for other in (chain.b, chain.c, chain.outsider):
        expect_zk_revert(
            lambda o=other: revoke(chain, zk, victim, o),
            "ConsortiumGatedNotMember"
            if other == chain.outsider
            else "CredentialRegistryNotAuthorized",
        )
    assert f.has(victim.leaf).call() and f.root().call() == zk.tree.root


def test_root_history_keeps_the_last_32(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    expiry = chain.now() + 86400
    roots = []
    for i in range(34):
        send(chain, f.issueCredential(identity(f"h{i}").commitment, NURSE, expiry), chain.c)
        roots.append(f.root().call())
    assert [f.isValidRoot(r).call() for r in roots[:2]] == [False, False]
    assert all(f.isValidRoot(r).call() for r in roots[2:])


def test_revocation_rights_follow_a_rotation(chain: Chain, zk: Zk) -> None:
    cred = issue(chain, zk, identity("rotating"), chain.a, NURSE)
    other = issue(chain, zk, identity("rotating-2"), chain.a, PHYSICIAN)
    new_a = chain.accounts[5]
    _rotate(chain, chain.a, new_a, [chain.b])
    # the old key is no member any more: it cannot revoke
    expect_zk_revert(lambda: revoke(chain, zk, cred, chain.a), "ConsortiumGatedNotMember")
    # the other live members still cannot: id 1 is held by a member (new_a)
    expect_zk_revert(lambda: revoke(chain, zk, cred, chain.b), "CredentialRegistryNotAuthorized")
    # the new key holds id 1: it revokes
    receipt = revoke(chain, zk, cred, new_a)
    (event,) = zk.registry.events.CredentialRevoked().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["revokedBy"] == new_a and event["args"]["hospitalId"] == 1
    # and it issues under the same id
    again = issue(chain, zk, identity("after-rotation"), new_a, NURSE)
    assert again.hospital_id == 1
    assert zk.registry.functions.has(other.leaf).call()


def test_a_removed_members_credentials_are_revocable_by_any_member(chain: Chain, zk: Zk) -> None:
    cred = issue(chain, zk, identity("orphan"), chain.c, NURSE)
    _remove(chain, chain.c, [chain.a, chain.b])
    # the removed member itself cannot act any more
    expect_zk_revert(lambda: revoke(chain, zk, cred, chain.c), "ConsortiumGatedNotMember")
    expect_zk_revert(
        lambda: zk.registry.functions.issueCredential(
            identity("late").commitment, NURSE, LICENCE
        ).transact({"from": chain.c}),
        "ConsortiumGatedNotMember",
    )
    # outsiders still cannot
    expect_zk_revert(lambda: revoke(chain, zk, cred, chain.outsider), "ConsortiumGatedNotMember")
    receipt = revoke(chain, zk, cred, chain.b)
    (event,) = zk.registry.events.CredentialRevoked().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["hospitalId"], event["args"]["revokedBy"]) == (3, chain.b)


def test_a_readmitted_hospitals_old_credentials_stay_revocable(chain: Chain, zk: Zk) -> None:
    """Re-admission assigns a new id: the old id is held by no member, so its credentials
    cannot get stuck either."""
    cred = issue(chain, zk, identity("old-id"), chain.c, NURSE)
    _remove(chain, chain.c, [chain.a, chain.b])
    c = chain.consortium.functions
    receipt = chain.send(c.propose(0, chain.c, "Gamma again"), chain.a)
    (created,) = chain.consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    chain.send(c.vote(created["args"]["id"]), chain.b)
    assert c.memberId(chain.c).call() == 4
    # c (now id 4) may revoke its old id-3 credential, as may any member
    revoke(chain, zk, cred, chain.c)


def test_a_consortium_vote_revokes(chain: Chain, zk: Zk) -> None:
    cred = issue(chain, zk, identity("voted-out"), chain.a, NURSE)
    issue(chain, zk, identity("bystander"), chain.b, NURSE)
    old_root = zk.tree.root
    data = revoke_call_data(zk, cred)
    # one vote (a's... here b's) is no majority: nothing happens yet
    c = chain.consortium
    receipt = chain.send(c.functions.proposeCall(zk.registry.address, data, "revoke"), chain.b)
    (created,) = c.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    assert zk.registry.functions.has(cred.leaf).call()
    receipt = send(chain, c.functions.vote(created["args"]["id"]), chain.c)
    events = zk.registry.events.CredentialRevoked().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["leaf"], e["args"]["revokedBy"]) for e in events] == [
        (cred.leaf, chain.deployment.consortium)
    ]
    zk.tree.remove(zk.tree.index_of(cred.leaf))
    assert zk.registry.functions.root().call() == zk.tree.root
    assert not zk.registry.functions.isValidRoot(old_root).call()


def test_revoking_every_leaf_leaves_root_zero_never_valid(chain: Chain, zk: Zk) -> None:
    cred = issue(chain, zk, identity("only"), chain.a, NURSE)
    revoke(chain, zk, cred, chain.a)
    f = zk.registry.functions
    assert f.root().call() == 0 == zk.tree.root
    assert not f.isValidRoot(0).call()
    # the issuer may issue the same credential again: a new index, a valid root again
    send(chain, f.issueCredential(cred.identity.commitment, NURSE, LICENCE), chain.a)
    zk.tree.insert(cred.leaf)
    assert f.root().call() == zk.tree.root and f.indexOf(cred.leaf).call() == 1
    assert f.isValidRoot(zk.tree.root).call()


def test_reference_tree_after_mixed_operations(chain: Chain, zk: Zk) -> None:
    """Issue, batch-issue and revoke in a mixed order (odd sizes, revoked siblings): the
    on-chain root equals the reference LeanIMT's after every step."""
    f = zk.registry.functions
    expiry = chain.now() + 86400
    live: list[IssuedCredential] = []
    for step in range(6):
        ids = [identity(f"mix-{step}-{i}") for i in range(step + 1)]
        send(
            chain,
            f.issueCredentials(
                [i.commitment for i in ids], [NURSE] * len(ids), [expiry] * len(ids)
            ),
            chain.b,
        )
        batch = [IssuedCredential(i, 2, NURSE, expiry) for i in ids]
        zk.tree.insert_many([c.leaf for c in batch])
        assert f.root().call() == zk.tree.root
        live += batch
        victim = live.pop(step % len(live))
        revoke(chain, zk, victim, chain.b)
        live.append(issue(chain, zk, identity(f"mix-single-{step}"), chain.b, NURSE))
    assert f.size().call() == zk.tree.size


def test_tree_growth_across_full_trees_matches_the_reference(chain: Chain, zk: Zk) -> None:
    """The registry keeps the root once (in the root history), not in sideNodes[depth]: it
    writes sideNodes[depth] only when a full tree grows a level. Grow from full and non-full
    trees by single and batch inserts, revoke on both sides of a growth: the root equals the
    reference LeanIMT's after every step."""
    f = zk.registry.functions
    expiry = chain.now() + 86400
    live: list[IssuedCredential] = []

    def batch(label: str, n: int) -> None:
        ids = [identity(f"grow-{label}-{i}") for i in range(n)]
        send(
            chain,
            f.issueCredentials([i.commitment for i in ids], [NURSE] * n, [expiry] * n),
            chain.b,
        )
        creds = [IssuedCredential(i, 2, NURSE, expiry) for i in ids]
        zk.tree.insert_many([c.leaf for c in creds])
        live.extend(creds)

    def check() -> None:
        assert f.root().call() == zk.tree.root
        assert f.depth().call() == zk.tree.depth and f.size().call() == zk.tree.size
        assert f.isValidRoot(zk.tree.root).call() == (zk.tree.root != 0)

    live.append(issue(chain, zk, identity("grow-first"), chain.b, NURSE))  # size 1, depth 0
    check()
    live.append(issue(chain, zk, identity("grow-second"), chain.b, NURSE))  # 1 -> 2: grows
    check()
    batch("to-4", 2)  # 2 -> 4: full again
    check()
    revoke(chain, zk, live.pop(1), chain.b)  # a revocation in a full tree, then growth
    check()
    batch("full-grows-by-two", 9)  # 4 -> 13: a full tree grows two levels in one batch
    check()
    revoke(chain, zk, live.pop(), chain.b)
    check()
    for i in range(3):  # 13 -> 16 by single inserts, then 16 -> 17 grows
        live.append(issue(chain, zk, identity(f"grow-single-{i}"), chain.b, NURSE))
        check()
    live.append(issue(chain, zk, identity("grow-17"), chain.b, NURSE))
    check()
    revoke(chain, zk, live.pop(0), chain.b)  # a leaf left of the growth
    check()
    batch("not-full-grows", 20)  # 17 -> 37: grows from a non-full tree
    check()
    revoke(chain, zk, live.pop(), chain.b)  # the last leaf
    check()


def test_root_history_window_and_marks(chain: Chain, zk: Zk) -> None:
    """Root 0 and non-field words are never valid (the ring stores root | 2^255); a
    revocation ends the window of every earlier root even after the ring wrapped."""
    f = zk.registry.functions
    assert not f.isValidRoot(0).call()
    expiry = chain.now() + 86400
    roots = []
    creds = []
    for i in range(40):
        creds.append(issue(chain, zk, identity(f"ring-{i}"), chain.c, NURSE))
        roots.append(f.root().call())
    assert [f.isValidRoot(r).call() for r in roots] == [False] * 8 + [True] * 32
    current = roots[-1]
    for word in (current | (1 << 255), current + R, 1 << 255, (1 << 256) - 1, R):
        assert not f.isValidRoot(word).call()
    revoke(chain, zk, creds[5], chain.c)
    assert [f.isValidRoot(r).call() for r in roots] == [False] * 40
    after = [f.root().call()]
    assert f.isValidRoot(after[0]).call()
    for i in range(3):
        send(
            chain, f.issueCredential(identity(f"ring-after-{i}").commitment, NURSE, expiry), chain.c
        )
        after.append(f.root().call())
    assert all(f.isValidRoot(r).call() for r in after)
    assert not any(f.isValidRoot(r).call() for r in roots)
