"""ClinicianAccess v2: valid credentials prove at every LeanIMT shape, every attack of issue 9
is tried and rejected, every public input is bound. Each proof costs ~0.5 s, so the cases are
targeted."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from zk.credentials import (
    access_context,
    credential_attributes,
    epoch_nullifier,
    identity_commitment,
    roles_mask,
)
from zk.field import R
from zk.merkle import LeanIMT
from zk.models import Proof
from zk.poseidon import poseidon
from zk.testing import (
    HOSPITAL,
    NOW,
    SIGNAL,
    AccessScenario,
    access_scenario,
    access_scenarios,
    assert_proves,
    assert_public_inputs_bound,
    assert_rejects,
)

NAME = "clinician_access"
PUBLIC = ("root", "context", "scope", "epochNullifier")
PHYSICIAN, NURSE = roles_mask(["physician"]), roles_mask(["nurse"])


@pytest.fixture(scope="module")
def ca(zk_prover):
    return zk_prover(NAME)


@pytest.fixture(scope="module")
def scenario() -> AccessScenario:
    # A nurse of hospital 7 among 5 other credentials; the class admits physicians and nurses.
    return access_scenario("nurse", PHYSICIAN | NURSE, others=5, position=2)


@pytest.fixture(scope="module")
def valid_proof(ca, scenario) -> Proof:
    return assert_proves(ca, scenario.inputs())


def context(s: AccessScenario, *, time=None, mask=None, hospital=None) -> int:
    return access_context(
        s.current_time if time is None else time,
        s.mask if mask is None else mask,
        s.class_hospital if hospital is None else hospital,
        s.signal,
    )


def forged_tree(s: AccessScenario, attrs: int) -> dict:
    """A tree holding the scenario identity's leaf with ``attrs`` chosen freely (no
    range checks, as a malicious registry never could on chain): root, depth, index,
    siblings for it."""
    leaf = poseidon([identity_commitment(s.identity.secret), attrs])
    tree = LeanIMT([*s.tree.leaves[:2], leaf])
    proof = tree.generate_proof(2)
    return {
        "root": tree.root,
        "depth": proof.depth,
        "index": proof.index,
        "siblings": proof.padded_siblings(),
    }


# -- valid proofs ----------------------------------------------------------------------------


def test_valid_credential_proves_with_public_inputs_in_spec_order(ca, scenario, valid_proof):
    inputs = scenario.inputs()
    assert ca.spec.public_inputs == PUBLIC
    assert valid_proof.public_inputs == tuple(inputs[n] for n in PUBLIC)
    assert valid_proof.public_inputs[0] == scenario.tree.root


def test_every_public_input_is_bound(ca, valid_proof):
    assert_public_inputs_bound(ca, valid_proof)


@pytest.mark.parametrize(
    ("others", "position", "depth"),
    [
        (0, 0, 0),  # a single leaf: root = leaf, no siblings
        (1, 1, 1),
        (12, 12, 2),  # 13 leaves: the last is carried up two levels unhashed
        (12, 5, 4),
    ],
)
def test_proves_for_every_lean_imt_shape(ca, others, position, depth):
    s = access_scenario("physician", others=others, position=position)
    assert s.proof.depth == depth
    proof = assert_proves(ca, s.inputs())
    assert proof.public_inputs[0] == s.tree.root


def test_class_of_the_issuing_hospital_or_any_hospital_proves(ca):
    s = access_scenario("nurse", class_hospital=HOSPITAL)
    assert_proves(ca, s.inputs())
    assert_proves(ca, s.inputs(context=context(s, hospital=0)))


# -- attacks ---------------------------------------------------------------------------------


def test_wrong_root_rejected(ca, scenario):
    assert_rejects(ca, scenario.inputs(root=(scenario.tree.root + 1) % R))


def test_revoked_credential_rejected(ca):
    s = access_scenario("nurse", others=3, position=1)
    stale = s.inputs()
    s.tree.remove(s.index)
    assert_rejects(ca, {**stale, "root": s.tree.root})


def test_mask_without_the_role_rejected(ca, scenario):
    # A class consent for physicians (and pharmacists) does not admit this nurse.
    mask = roles_mask(["physician", "pharmacist"])
    assert_rejects(ca, scenario.inputs(context=context(scenario, mask=mask)))
    assert_rejects(ca, scenario.inputs(context=context(scenario, mask=0)))


def test_prover_cannot_change_role_hospital_or_expiry_away_from_the_leaf(ca, scenario):
    # The issuer set nurse / hospital 7 / expiry E in the leaf; claiming otherwise changes
    # the leaf, so the path no longer reaches the root.
    physicians = context(scenario, mask=PHYSICIAN)
    assert_rejects(ca, scenario.inputs(role=0, context=physicians))
    other = context(scenario, hospital=HOSPITAL + 1)
    assert_rejects(ca, scenario.inputs(hospitalId=HOSPITAL + 1, context=other))
    assert_rejects(ca, scenario.inputs(licenceExpiry=scenario.issued.licence_expiry + 86400))


def test_class_hospital_of_another_hospital_rejected(ca, scenario):
    assert_rejects(ca, scenario.inputs(context=context(scenario, hospital=HOSPITAL + 1)))


def test_expired_licence_rejected_at_and_after_expiry(ca):
    s = access_scenario("physician", licence_expiry=NOW + 10)
    assert_rejects(ca, s.inputs(context=context(s, time=NOW + 10)))
    assert_rejects(ca, s.inputs(context=context(s, time=2**40 - 1)))
    assert_proves(ca, s.inputs(context=context(s, time=NOW + 9)))


def test_wrong_secret_rejected_even_with_its_own_nullifier(ca, scenario):
    wrong = scenario.identity.secret + 1
    inputs = scenario.inputs()
    nullifier = epoch_nullifier(inputs["scope"], wrong)
    assert_rejects(ca, scenario.inputs(secret=wrong, epochNullifier=nullifier))


def test_epoch_nullifier_of_another_scope_rejected(ca, scenario):
    inputs = scenario.inputs()
    other = epoch_nullifier(inputs["scope"] + 1, scenario.identity.secret)
    assert_rejects(ca, scenario.inputs(epochNullifier=other))
    # Nor may the scope move while the nullifier stays (another record, epoch, chain, gate).
    assert_rejects(ca, scenario.inputs(scope=inputs["scope"] + 1))


def test_depth_must_be_the_proofs_and_at_most_20(ca, scenario):
    depth = scenario.proof.depth
    assert_rejects(ca, scenario.inputs(depth=depth + 1))
    assert_rejects(ca, scenario.inputs(depth=depth - 1))
    assert_rejects(ca, scenario.inputs(depth=21))
    assert_rejects(ca, scenario.inputs(depth=R - 1))


def test_non_binary_index_rejected(ca, scenario):
    index = scenario.proof.index
    assert_rejects(ca, scenario.inputs(index=index + 2**20))  # same low bits, 21 bits
    assert_rejects(ca, scenario.inputs(index=(index - 2**20) % R))


def test_attribute_aliasing_across_the_32_and_36_bit_boundaries_rejected(ca, scenario):
    # Same attrs integer, different split: hospitalId + 2^32 with role - 1 (nurse ->
    # physician), or role + 16 with expiry - 1. Only the range checks stop these.
    h, e = scenario.issued.hospital_id, scenario.issued.licence_expiry
    physicians = context(scenario, mask=PHYSICIAN | NURSE)
    assert_rejects(ca, scenario.inputs(hospitalId=h + 2**32, role=0, context=physicians))
    assert_rejects(ca, scenario.inputs(role=1 + 16, licenceExpiry=e - 1))


def test_field_wrapped_expiry_rejected(ca, scenario):
    # role 0 with the same attrs mod r: expiry' = (attrs - h) / 2^36 mod r, a huge value the
    # 40-bit licence check must refuse.
    h, attrs = scenario.issued.hospital_id, scenario.issued.attributes
    expiry = (attrs - h) * pow(2**36, -1, R) % R
    assert (h + expiry * 2**36) % R == attrs
    physicians = context(scenario, mask=PHYSICIAN)
    assert_rejects(ca, scenario.inputs(role=0, licenceExpiry=expiry, context=physicians))


def test_leaf_with_an_out_of_range_expiry_gives_no_licence(ca, scenario):
    # A leaf no registry can build (expiry is uint40 on chain) with expiry 2^64 + now, the
    # v1 "expiry of 2^64 - 1" trick: expiry - currentTime - 1 does not fit 40 bits.
    big = 2**64 + NOW
    attrs = credential_attributes(HOSPITAL, "nurse", 0) + big * 2**36
    inputs = scenario.inputs(licenceExpiry=big, **forged_tree(scenario, attrs))
    assert_rejects(ca, inputs)


def test_time_fields_cannot_overflow_into_the_mask(ca):
    # current time 2^40 + t would be "mask bit 0 + time t": the packing keeps them apart, so
    # a physician-only mask written through the time field admits no nurse.
    s = access_scenario("nurse")
    sneaky = access_context(NOW, 0, 0, SIGNAL) + 2**40 * PHYSICIAN
    assert_rejects(ca, s.inputs(context=sneaky))
    assert_rejects(ca, s.inputs(context=s.inputs()["context"] + 2**240))


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(s=access_scenarios(max_others=6))
def test_property_random_valid_scenarios_prove(ca, s: AccessScenario):
    proof = assert_proves(ca, s.inputs())
    assert ca.verifier.verify(proof)
