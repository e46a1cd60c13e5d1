"""ZkAccessGate with real clinician_access proofs (dev setup, groth16py prover).

Proof-verifying transactions/calls are kept to four (py-evm pairing ~0.6 s each); every
other rejection happens before the verifier is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from contract_helpers import Chain
from eth_utils import keccak
from zk_helpers import (
    ROLES_NURSE,
    ROLES_PHYSICIAN,
    TX_GAS,
    Credential,
    Zk,
    access_inputs,
    clinician_prover,
    credential,
    deploy_zk,
    expect_zk_revert,
    request_tuple,
    send,
)

from node.chain.exceptions import ChainError, DeploymentFailed
from node.chain.zk_deploy import ZkDeployment, link_bytecode
from zk.merkle import CredentialTree
from zk.models import Proof

RADIOLOGY = keccak(text="radiology")
PSYCHIATRY = keccak(text="psychiatry")
MAX_AGE = 3600
MAX_SKEW = 900


@dataclass
class Signed:
    """A proof with the request that carries it."""

    request: tuple[Any, ...]
    proof: list[int]
    inputs: dict[str, Any]


@dataclass
class Setup:
    zk: Zk
    tree: CredentialTree
    nurse: Credential
    doctor: Credential
    one: Signed  # nurse, record 1
    two: Signed  # nurse, record 2
    three: Signed  # physician, record 3


def _sign(
    cred: Credential, tree: CredentialTree, label: str, category: bytes, roles: int, now: int
) -> Signed:
    record_id, signal = keccak(text=f"record-{label}"), keccak(text=f"x25519-{label}")
    inputs = access_inputs(
        cred, tree, record_id=record_id, signal=signal, allowed_roles=roles, current_time=now
    )
    proof: Proof = clinician_prover().prove(inputs)
    return Signed(request_tuple(inputs, record_id, category, signal), list(proof.words), inputs)


@pytest.fixture(scope="module")
def setup(_session_chain: Chain) -> Setup:
    chain = _session_chain
    zk = deploy_zk(
        chain,
        clinician_prover().keys.verification_key_json,
        max_proof_age=MAX_AGE,
        max_clock_skew=MAX_SKEW,
    )
    nurse = credential("nurse-1", chain.a, role=1)
    doctor = credential("doctor-1", chain.b, role=0)
    tree = CredentialTree()
    send(chain, zk.registry.functions.addCredential(nurse.commitment), chain.a)
    send(chain, zk.registry.functions.addCredential(doctor.commitment), chain.b)
    tree.insert_many([nurse.commitment, doctor.commitment])
    assert zk.registry.functions.root().call() == tree.root
    both = ROLES_NURSE | ROLES_PHYSICIAN
    send(chain, zk.gate.functions.setCategoryPolicy(RADIOLOGY, both), chain.a)
    send(chain, zk.gate.functions.setCategoryPolicy(PSYCHIATRY, ROLES_PHYSICIAN), chain.c)
    now = chain.now()
    return Setup(
        zk=zk,
        tree=tree,
        nurse=nurse,
        doctor=doctor,
        one=_sign(nurse, tree, "1", RADIOLOGY, both, now),
        two=_sign(nurse, tree, "2", RADIOLOGY, both, now),
        three=_sign(doctor, tree, "3", RADIOLOGY, both, now),
    )


def _granted(s: Setup, receipt: Any) -> list[dict[str, Any]]:
    events = s.zk.gate.events.ZkAccessGranted().process_receipt(receipt)
    return [dict(e["args"]) for e in events]


def _unchanged(s: Setup, *signed: Signed) -> None:
    for x in signed:
        assert s.zk.gate.functions.nullifierUsed(x.request[5]).call() is False


def test_deployment_wiring(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    dep = setup.zk.deployment
    assert g.credentialRegistry().call() == dep.credential_registry
    assert g.verifier().call() == dep.clinician_verifier
    assert g.consortium().call() == chain.deployment.consortium
    assert (g.maxProofAge().call(), g.maxClockSkew().call()) == (MAX_AGE, MAX_SKEW)
    assert ZkDeployment.from_json(dep.to_json()) == dep
    with pytest.raises(ChainError):
        ZkDeployment.from_json('{"poseidon_t3": "0x00"}')
    with pytest.raises(DeploymentFailed):
        link_bytecode("CredentialRegistry", {})
    linked = link_bytecode("CredentialRegistry", {"PoseidonT3": dep.poseidon_t3})
    assert "__" not in linked and dep.poseidon_t3[2:].lower() in linked
    # the deployed registry's code calls the deployed library
    code = chain.w3.eth.get_code(dep.credential_registry).hex()
    assert dep.poseidon_t3[2:].lower() in code


def test_public_inputs_match_the_prover(setup: Setup) -> None:
    for x in (setup.one, setup.three):
        on_chain = setup.zk.gate.functions.publicInputs(x.request).call()
        assert tuple(on_chain) == tuple(clinician_prover().public_inputs(x.inputs))


def test_policy(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    assert g.categoryPolicy(PSYCHIATRY).call() == ROLES_PHYSICIAN
    receipt = send(chain, g.setCategoryPolicy(PSYCHIATRY, 0xFFFF), chain.b)
    (event,) = setup.zk.gate.events.PolicySet().process_receipt(receipt)
    assert dict(event["args"]) == {
        "category": PSYCHIATRY,
        "allowedRoles": 0xFFFF,
        "hospital": chain.b,
    }
    expect_zk_revert(
        lambda: g.setCategoryPolicy(PSYCHIATRY, 1 << 16).transact({"from": chain.a}),
        "ZkAccessGateInvalidPolicy",
    )
    expect_zk_revert(
        lambda: g.setCategoryPolicy(PSYCHIATRY, 1).transact({"from": chain.outsider}),
        "ConsortiumGatedNotMember",
    )
    assert g.categoryPolicy(PSYCHIATRY).call() == 0xFFFF


def test_access_granted_once(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    one = setup.one
    receipt = send(chain, g.access(one.request, one.proof), chain.b)
    assert _granted(setup, receipt) == [
        {
            "recordId": one.request[0],
            "nullifierHash": one.request[5],
            "category": RADIOLOGY,
            "signal": one.request[4],
            "root": setup.tree.root,
            "relayer": chain.b,
        }
    ]
    # nothing in the log identifies the clinician
    (log,) = receipt["logs"]
    blob = bytes(log["data"]) + b"".join(bytes(t) for t in log["topics"])
    for secret in (setup.nurse.commitment, setup.nurse.secret, int(setup.nurse.hospital, 16)):
        assert secret.to_bytes(32, "big") not in blob
    assert g.nullifierUsed(one.request[5]).call() is True
    # the same nullifier again (any relayer): rejected before the proof is checked
    args = expect_zk_revert(
        lambda: g.access(one.request, one.proof).transact({"from": chain.c}),
        "ZkAccessGateNullifierUsed",
    )
    assert args == (one.request[5],)


def test_batch_of_two(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    two, three = setup.two, setup.three
    receipt = send(
        chain, g.accessBatch([two.request, three.request], [two.proof, three.proof]), chain.a
    )
    events = _granted(setup, receipt)
    assert [e["nullifierHash"] for e in events] == [two.request[5], three.request[5]]
    assert {e["relayer"] for e in events} == {chain.a}
    assert g.nullifierUsed(two.request[5]).call() and g.nullifierUsed(three.request[5]).call()


def test_batch_rejections(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    one, two = setup.one, setup.two
    for requests, proofs in (([], []), ([one.request], [one.proof, two.proof])):
        expect_zk_revert(
            lambda r=requests, p=proofs: g.accessBatch(r, p).transact({"from": chain.a}),
            "ZkAccessGateInvalidBatch",
        )
    expect_zk_revert(
        lambda: g.accessBatch([one.request, one.request], [one.proof, one.proof]).transact(
            {"from": chain.a}
        ),
        "ZkAccessGateNullifierUsed",
    )
    # one proof bound to another signal: the whole batch fails (one pairing check)
    forged = list(two.request)
    forged[4] = keccak(text="someone else's key")
    expect_zk_revert(
        lambda: g.accessBatch([one.request, tuple(forged)], [one.proof, two.proof]).call(
            {"from": chain.a, "gas": TX_GAS}
        ),
        "ZkAccessGateInvalidProof",
    )
    _unchanged(setup, one, two)


def test_wrong_category_policy(chain: Chain, setup: Setup) -> None:
    """The nurse's proof was made for radiology's mask; psychiatry admits physicians only,
    so its allowedRoles input differs and the proof fails."""
    g = setup.zk.gate.functions
    request = list(setup.one.request)
    request[1] = PSYCHIATRY
    expect_zk_revert(
        lambda: g.access(tuple(request), setup.one.proof).call({"from": chain.a, "gas": TX_GAS}),
        "ZkAccessGateInvalidProof",
    )
    request[1] = keccak(text="no policy here")
    expect_zk_revert(
        lambda: g.access(tuple(request), setup.one.proof).transact({"from": chain.a}),
        "ZkAccessGateNoPolicy",
    )
    _unchanged(setup, setup.one)


def test_roots(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    one = setup.one
    request = list(one.request)
    request[2] = 424242
    assert expect_zk_revert(
        lambda: g.access(tuple(request), one.proof).transact({"from": chain.a}),
        "ZkAccessGateUnknownRoot",
    ) == (424242,)
    # revoking the nurse invalidates every earlier root: her proofs are dead
    tree = setup.tree
    index = tree.index_of(setup.nurse.commitment)
    path = tree.path(index)
    revoke = setup.zk.registry.functions.revokeCredential(
        setup.nurse.commitment, list(path.siblings), list(path.indices)
    )
    send(chain, revoke, chain.a)
    expect_zk_revert(
        lambda: g.access(one.request, one.proof).transact({"from": chain.a}),
        "ZkAccessGateUnknownRoot",
    )
    # the physician's proof used the same (now revoked) root as well
    expect_zk_revert(
        lambda: g.accessBatch([setup.three.request], [setup.three.proof]).transact(
            {"from": chain.a}
        ),
        "ZkAccessGateUnknownRoot",
    )
    _unchanged(setup, one, setup.three)


def test_time_window(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    one = setup.one
    now = chain.now()
    future = list(one.request)
    future[3] = now + MAX_SKEW + 60
    args = expect_zk_revert(
        lambda: g.access(tuple(future), one.proof).transact({"from": chain.a}),
        "ZkAccessGateFutureProof",
    )
    assert args[0] == future[3]
    huge = list(one.request)
    huge[3] = 2**256 - 1  # no overflow panic
    expect_zk_revert(
        lambda: g.access(tuple(huge), one.proof).transact({"from": chain.a}),
        "ZkAccessGateFutureProof",
    )
    chain.travel_to(one.request[3] + MAX_AGE + 1)
    expect_zk_revert(
        lambda: g.access(one.request, one.proof).transact({"from": chain.a}),
        "ZkAccessGateStaleProof",
    )
    _unchanged(setup, one)


def test_relayer_must_be_a_member(chain: Chain, setup: Setup) -> None:
    g = setup.zk.gate.functions
    expect_zk_revert(
        lambda: g.access(setup.one.request, setup.one.proof).transact({"from": chain.outsider}),
        "ConsortiumGatedNotMember",
    )
    expect_zk_revert(
        lambda: g.accessBatch([setup.one.request], [setup.one.proof]).transact(
            {"from": chain.outsider}
        ),
        "ConsortiumGatedNotMember",
    )
    _unchanged(setup, setup.one)


def test_constructor_checks(chain: Chain, setup: Setup) -> None:
    dep = setup.zk.deployment
    zero = "0x" + "00" * 20
    from node.chain.artifacts import load_artifact

    art = load_artifact("ZkAccessGate")
    factory = chain.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    cons = chain.deployment.consortium
    for args in (
        (cons, zero, dep.clinician_verifier, 60, 0),
        (cons, dep.credential_registry, zero, 60, 0),
        (cons, dep.credential_registry, dep.clinician_verifier, 0, 0),
    ):
        expect_zk_revert(
            lambda a=args: factory.constructor(*a).transact({"from": chain.a}),
            "ZkAccessGateInvalidConfig",
        )
