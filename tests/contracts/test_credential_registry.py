"""CredentialRegistry: member-only adds, issuer-only revocation with a Merkle path, and the
root history. The on-chain root must equal zk.merkle.CredentialTree's after every step."""

from __future__ import annotations

import pytest
from contract_helpers import Chain
from zk_helpers import Zk, clinician_prover, deploy_zk, expect_zk_revert, send

from zk.field import R
from zk.merkle import CredentialTree


@pytest.fixture(scope="module")
def zk(_session_chain: Chain) -> Zk:
    return deploy_zk(_session_chain, clinician_prover().keys.verification_key_json)


def _added(zk: Zk, receipt: object) -> list[dict]:
    return [dict(e["args"]) for e in zk.registry.events.CredentialAdded().process_receipt(receipt)]


def _revoke(chain: Chain, zk: Zk, tree: CredentialTree, leaf: int, sender: str) -> object:
    index = tree.index_of(leaf)
    path = tree.path(index)
    fn = zk.registry.functions.revokeCredential(leaf, list(path.siblings), list(path.indices))
    receipt = send(chain, fn, sender)
    tree.remove(index)
    return receipt


def test_initial_root_is_the_empty_tree(chain: Chain, zk: Zk) -> None:
    tree = CredentialTree()
    f = zk.registry.functions
    assert f.root().call() == tree.root
    assert f.isValidRoot(tree.root).call() is True
    assert f.isValidRoot(12345).call() is False
    assert f.numberOfLeaves().call() == 0
    assert f.DEPTH().call() == 20 and f.ROOT_HISTORY().call() == 32
    assert zk.registry.functions.consortium().call() == chain.deployment.consortium


def test_add_by_member(chain: Chain, zk: Zk) -> None:
    tree = CredentialTree()
    for i, (leaf, who) in enumerate([(111, chain.a), (222, chain.b), (333, chain.a)]):
        receipt = send(chain, zk.registry.functions.addCredential(leaf), who)
        tree.insert(leaf)
        root = zk.registry.functions.root().call()
        assert root == tree.root
        assert _added(zk, receipt) == [
            {"hospital": who, "commitment": leaf, "index": i, "root": root}
        ]
        assert zk.registry.functions.credential(leaf).call() == [who, i, False]
        assert zk.registry.functions.isValidRoot(root).call() is True
    assert zk.registry.functions.numberOfLeaves().call() == 3


def test_add_rejections(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    before = f.root().call()
    assert expect_zk_revert(
        lambda: f.addCredential(5).transact({"from": chain.outsider}), "ConsortiumGatedNotMember"
    ) == (chain.outsider,)
    expect_zk_revert(
        lambda: f.addCredential(0).transact({"from": chain.a}),
        "CredentialRegistryInvalidCommitment",
    )
    expect_zk_revert(
        lambda: f.addCredential(R).transact({"from": chain.a}),
        "CredentialRegistryInvalidCommitment",
    )
    send(chain, f.addCredential(77), chain.a)
    after_one = f.root().call()
    expect_zk_revert(
        lambda: f.addCredential(77).transact({"from": chain.b}), "CredentialRegistryDuplicate"
    )
    expect_zk_revert(
        lambda: f.addCredentials([]).transact({"from": chain.a}), "CredentialRegistryEmptyBatch"
    )
    # all or nothing: the valid first leaf of a failing batch is not added
    expect_zk_revert(
        lambda: f.addCredentials([78, R + 1]).transact({"from": chain.a}),
        "CredentialRegistryInvalidCommitment",
    )
    assert before != after_one == f.root().call()
    assert f.numberOfLeaves().call() == 1


def test_batch_add(chain: Chain, zk: Zk) -> None:
    tree = CredentialTree()
    leaves = [1001, 1002, 1003, 1004, 1005]
    send(chain, zk.registry.functions.addCredential(999), chain.c)
    tree.insert(999)
    mid_root = tree.root
    receipt = send(chain, zk.registry.functions.addCredentials(leaves), chain.b)
    tree.insert_many(leaves)
    root = zk.registry.functions.root().call()
    assert root == tree.root
    events = _added(zk, receipt)
    assert [e["commitment"] for e in events] == leaves
    assert [e["index"] for e in events] == [1, 2, 3, 4, 5]
    assert {e["root"] for e in events} == {root}
    assert {e["hospital"] for e in events} == {chain.b}
    # one root per call: the previous root and the final one are valid
    assert zk.registry.functions.isValidRoot(mid_root).call() is True
    assert zk.registry.functions.isValidRoot(root).call() is True


def test_revoke_by_issuer_with_path(chain: Chain, zk: Zk) -> None:
    tree = CredentialTree()
    leaves = [501, 502, 503]
    send(chain, zk.registry.functions.addCredentials(leaves), chain.a)
    tree.insert_many(leaves)
    f = zk.registry.functions
    path = tree.path(1)
    # another member cannot revoke a's credential; unknown commitment; wrong path
    expect_zk_revert(
        lambda: f.revokeCredential(502, list(path.siblings), list(path.indices)).transact(
            {"from": chain.b}
        ),
        "CredentialRegistryNotIssuer",
    )
    expect_zk_revert(
        lambda: f.revokeCredential(504, list(path.siblings), list(path.indices)).transact(
            {"from": chain.a}
        ),
        "CredentialRegistryUnknown",
    )
    expect_zk_revert(
        lambda: f.revokeCredential(502, list(tree.path(0).siblings), list(path.indices)).transact(
            {"from": chain.a}
        ),
        "LeafDoesNotExist",
    )
    expect_zk_revert(
        lambda: f.revokeCredential(502, list(path.siblings)[:19], list(path.indices)[:19]).transact(
            {"from": chain.a}
        ),
        "WrongMerkleProofPath",
    )
    assert f.root().call() == tree.root

    receipt = _revoke(chain, zk, tree, 502, chain.a)
    root = f.root().call()
    assert root == tree.root
    (event,) = zk.registry.events.CredentialRevoked().process_receipt(receipt)
    assert dict(event["args"]) == {
        "hospital": chain.a,
        "commitment": 502,
        "index": 1,
        "root": root,
    }
    assert f.credential(502).call() == [chain.a, 1, True]
    new_path = tree.path(1)
    expect_zk_revert(
        lambda: f.revokeCredential(502, list(new_path.siblings), list(new_path.indices)).transact(
            {"from": chain.a}
        ),
        "CredentialRegistryAlreadyRevoked",
    )
    # a revoked commitment is burnt; others can still be revoked (path in the new tree)
    expect_zk_revert(
        lambda: f.addCredential(502).transact({"from": chain.a}), "CredentialRegistryDuplicate"
    )
    _revoke(chain, zk, tree, 503, chain.a)
    assert f.root().call() == tree.root
    send(chain, f.addCredential(504), chain.b)
    tree.insert(504)
    assert f.root().call() == tree.root


@pytest.mark.slow  # 34 tree updates in py-evm (~1.5 s each)
def test_root_history_window_and_revocation(chain: Chain, zk: Zk) -> None:
    f = zk.registry.functions
    tree = CredentialTree()
    send(chain, f.addCredential(10_000), chain.a)
    tree.insert(10_000)
    first = tree.root
    roots = [first]
    for i in range(1, 32):  # 31 more roots: `first` is the oldest of the last 32
        send(chain, f.addCredential(10_000 + i), chain.a)
        tree.insert(10_000 + i)
        roots.append(tree.root)
    assert f.root().call() == tree.root
    assert all(f.isValidRoot(r).call() for r in roots)
    send(chain, f.addCredential(20_000), chain.a)  # the 33rd root pushes `first` out
    tree.insert(20_000)
    assert f.isValidRoot(first).call() is False
    assert f.isValidRoot(roots[1]).call() is True
    assert f.isValidRoot(tree.root).call() is True

    before_revocation = [*roots[1:], tree.root]
    _revoke(chain, zk, tree, 10_005, chain.a)
    assert f.root().call() == tree.root
    assert not any(f.isValidRoot(r).call() for r in before_revocation)
    assert f.isValidRoot(tree.root).call() is True
    revoked_root = tree.root
    send(chain, f.addCredential(30_000), chain.b)
    tree.insert(30_000)
    assert f.isValidRoot(revoked_root).call() is True  # same epoch: still in the window
    assert f.isValidRoot(tree.root).call() is True
