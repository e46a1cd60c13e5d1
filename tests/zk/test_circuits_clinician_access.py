"""ClinicianAccess: valid credentials prove, every rule rejects its violation, all public
inputs are bound. Each proof costs ~0.6 s, so the cases are few and targeted."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from zk.credentials import ROLES, nullifier_hash, roles_mask
from zk.field import R
from zk.models import Proof
from zk.poseidon import poseidon
from zk.testing import (
    NOW,
    AccessScenario,
    access_scenario,
    access_scenarios,
    assert_proves,
    assert_public_inputs_bound,
    assert_rejects,
)

NAME = "clinician_access"
PUBLIC = ("root", "allowedRoles", "currentTime", "externalNullifier", "nullifierHash", "signalHash")


@pytest.fixture(scope="module")
def ca(zk_prover):
    return zk_prover(NAME)


@pytest.fixture(scope="module")
def scenario() -> AccessScenario:
    return access_scenario("nurse", roles_mask(["physician", "nurse"]), others=3, position=1)


@pytest.fixture(scope="module")
def valid_proof(ca, scenario) -> Proof:
    return assert_proves(ca, scenario.inputs())


def test_valid_credential_proves_with_public_inputs_in_spec_order(ca, scenario, valid_proof):
    inputs = scenario.inputs()
    assert ca.spec.public_inputs == PUBLIC
    assert valid_proof.public_inputs == tuple(inputs[n] for n in PUBLIC)
    assert valid_proof.public_inputs[0] == scenario.tree.root


def test_every_public_input_is_bound(ca, valid_proof):
    assert_public_inputs_bound(ca, valid_proof)


def test_wrong_root_rejected(ca, scenario):
    assert_rejects(ca, scenario.inputs(root=(scenario.tree.root + 1) % R))


def test_stale_path_rejected_after_revocation(ca, scenario):
    # The credential is removed (leaf zeroed): its old path no longer reaches the new root.
    path = scenario.tree.path(scenario.index)
    tree = scenario.tree
    snapshot = tree.leaf(scenario.index)
    tree.remove(scenario.index)
    try:
        inputs = scenario.inputs(pathElements=list(path.siblings), pathIndices=list(path.indices))
        assert_rejects(ca, inputs)
    finally:
        tree.update(scenario.index, snapshot)


def test_role_not_allowed_rejected(ca, scenario):
    assert_rejects(ca, scenario.inputs(allowedRoles=roles_mask(["physician", "pharmacist"])))


def test_role_16_rejected_even_with_every_mask_bit_set(ca, scenario):
    # Built by hand: Credential refuses roles outside ROLES.
    assert len(ROLES) == 16
    cred = scenario.credential
    leaf = poseidon([cred.secret, cred.hospital_id, 16, cred.licence_expiry])
    tree = scenario.tree.__class__()
    tree.insert(leaf)
    path = tree.path(0)
    inputs = scenario.inputs(
        root=tree.root,
        role=16,
        allowedRoles=(1 << 16) - 1,
        pathElements=list(path.siblings),
        pathIndices=list(path.indices),
    )
    assert_rejects(ca, inputs)


def test_allowed_roles_above_16_bits_rejected(ca, scenario):
    # A mask with the role's bit set but wider than 16 bits fails the Num2Bits(16) range check.
    mask = scenario.allowed_roles | (1 << 16)
    assert_rejects(ca, scenario.inputs(allowedRoles=mask))


def test_expired_licence_rejected_at_and_after_expiry(ca, scenario):
    expiry = scenario.credential.licence_expiry
    assert_rejects(ca, scenario.inputs(currentTime=expiry))
    assert_proves(ca, scenario.inputs(currentTime=expiry - 1))


def test_time_wrapping_past_2_64_rejected(ca):
    # LessThan(64) alone is unsound for inputs >= 2^64 (e.g. r - 1, a "negative" time);
    # the Num2Bits(64) range checks must reject them.
    s = access_scenario("physician", licence_expiry=NOW)
    assert_rejects(ca, s.inputs(currentTime=R - 1))
    assert_rejects(ca, s.inputs(currentTime=NOW + 2**64))


def test_licence_expiry_of_2_64_or_more_rejected(ca):
    # An expiry >= 2^64 committed in the leaf: range check fails although it is "later".
    s = access_scenario("physician", licence_expiry=2**64 - 1)
    cred = s.credential
    big = 2**64 + NOW
    leaf = poseidon([cred.secret, cred.hospital_id, cred.role, big])
    tree = s.tree.__class__()
    tree.insert(leaf)
    path = tree.path(0)
    inputs = s.inputs(
        root=tree.root,
        licenceExpiry=big,
        pathElements=list(path.siblings),
        pathIndices=list(path.indices),
    )
    assert_rejects(ca, inputs)


def test_wrong_nullifier_rejected(ca, scenario):
    inputs = scenario.inputs()
    assert_rejects(ca, scenario.inputs(nullifierHash=(inputs["nullifierHash"] + 1) % R))
    # A nullifier for another context (external nullifier) is also refused.
    other = nullifier_hash(inputs["externalNullifier"] + 1, scenario.credential.secret)
    assert_rejects(ca, scenario.inputs(nullifierHash=other))


def test_wrong_secret_rejected(ca, scenario):
    # The nullifier matches the wrong secret, but the leaf does not.
    wrong = scenario.credential.secret + 1
    inputs = scenario.inputs()
    nh = nullifier_hash(inputs["externalNullifier"], wrong)
    assert_rejects(ca, scenario.inputs(secret=wrong, nullifierHash=nh))


def test_non_binary_path_index_rejected(ca, scenario):
    # Index 2 at a level where the node is a left child (0): swap = 2*(sibling - node) yields
    # (2*sib - node, 2*node - sib), a different hash - and the boolean constraint fails anyway.
    inputs = scenario.inputs()
    indices = list(inputs["pathIndices"])
    level = indices.index(0)
    indices[level] = 2
    assert_rejects(ca, scenario.inputs(pathIndices=indices))


def test_leaf_in_another_position_proves(ca):
    s = access_scenario("physician", others=5, position=4)
    proof = assert_proves(ca, s.inputs())
    assert proof.public_inputs[1] == 1  # physician only


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(s=access_scenarios(max_others=3))
def test_property_random_valid_scenarios_prove(ca, s: AccessScenario):
    proof = assert_proves(ca, s.inputs())
    assert ca.verifier.verify(proof)
