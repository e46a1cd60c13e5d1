"""The policy DSL: text and Python front ends agree, invalid policies are refused, the default
policy generates clinician_access, and a generated variant proves end to end."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from zk.compiler import check_budget, compile_circuit
from zk.credentials import roles_mask
from zk.exceptions import CircuitError
from zk.policy import (
    Policy,
    PolicyError,
    compile_policy,
    estimate_constraints,
    parse_policies,
    parse_policy,
)
from zk.registry import get_circuit
from zk.testing import (
    HOSPITAL,
    access_scenario,
    assert_proves,
    assert_public_inputs_bound,
    assert_rejects,
)

LAB_READ = """
# who may read lab results
policy lab_read {
    category lab;
    roles physician, nurse;   // any order
    licence valid;
}
"""
OTHER_HOSPITAL = 0xB0B


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("policies")


def test_text_and_python_policies_are_the_same_ast():
    parsed = parse_policy(LAB_READ)
    built = Policy(name="lab_read", category="lab", roles={"nurse", "physician"})
    assert parsed == built
    assert parsed.allowed_roles == roles_mask(["physician", "nurse"]) == 0b11
    assert parsed.is_default
    text = "policy a { category imaging; roles radiologist; licence any; hospitals 0x0a, 11; }"
    (a,) = parse_policies(text + "\npolicy b { roles nurse; category lab; mask fixed; }")[:1]
    assert a.hospitals == frozenset({10, 11}) and not a.licence_valid
    b = parse_policies(text + "\npolicy b { roles nurse; category lab; mask fixed; }")[1]
    assert not b.public_roles and b.roles == frozenset({"nurse"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policy p { category lab; roles surgeon; }", "unknown role 'surgeon'"),
        ("policy p { category lab; roles ; }", "line 1 col 32: expected role"),
        ("policy p { category Lab!; roles nurse; }", "unexpected '!'"),
        ("policy p { category LAB; roles nurse; }", "bad category 'LAB'"),
        ("policy p { roles nurse; }", "missing 'category'"),
        ("policy p { category lab; }", "missing 'roles'"),
        ("policy p { category lab; category x; roles nurse; }", "category given twice"),
        ("policy p { category lab; roles nurse; licence maybe; }", "expected valid or any"),
        ("policy p { category lab; roles nurse; colour red; }", "unknown statement 'colour'"),
        ("policy p { category lab; roles nurse;", "end of input: expected a statement"),
        ("policy P { category lab; roles nurse; }", "bad policy name 'P'"),
        ("policy p { category lab; roles nurse; hospitals 0; }", "non-zero 160-bit"),
        ("", "exactly one policy, found 0"),
    ],
)
def test_invalid_policy_texts_are_refused_clearly(text, message):
    with pytest.raises(PolicyError, match=message) as info:
        parse_policy(text)
    assert isinstance(info.value, CircuitError)


def test_invalid_python_policies_are_refused():
    with pytest.raises(PolicyError, match="no roles"):
        Policy("p", "lab", set())
    with pytest.raises(PolicyError, match="unknown role 'surgeon'"):
        Policy("p", "lab", {"nurse", "surgeon"})
    with pytest.raises(PolicyError, match="bad category"):
        Policy("p", "", {"nurse"})
    with pytest.raises(PolicyError, match="1 to 16 hospitals"):
        Policy("p", "lab", {"nurse"}, hospitals=range(1, 18))
    with pytest.raises(PolicyError, match="1 to 16 hospitals"):
        Policy("p", "lab", {"nurse"}, hospitals=[])


def test_default_policy_generates_clinician_access(policy_dir):
    compiled = compile_policy(parse_policy(LAB_READ), policy_dir)
    reference = get_circuit("clinician_access")
    assert compiled.spec.public_inputs == reference.public_inputs
    assert compiled.spec.signals == reference.signals
    assert compiled.implied_inputs == {"allowedRoles": 0b11}
    assert compiled.category_id == keccak(text="lab")
    generated = compile_circuit(compiled.spec)
    expected = compile_circuit(reference)
    assert generated.constraints == expected.constraints == compiled.estimate
    assert generated.wires == expected.wires
    assert {c.component: c.constraints for c in generated.components} == {
        c.component: c.constraints for c in expected.components
    }
    check_budget(generated, compiled.spec)
    # Only lib templates: the generated main declares no template of its own but the policy's.
    assert compiled.source.count("template ") == 1
    assert 'include "credential.circom";' in compiled.source


def test_options_change_the_generated_circuit(policy_dir):
    base = Policy("v", "lab", {"nurse"})
    no_licence = compile_policy(Policy("v1", "lab", {"nurse"}, licence_valid=False), policy_dir)
    fixed = compile_policy(Policy("v2", "lab", {"nurse"}, public_roles=False), policy_dir)
    members = compile_policy(Policy("v3", "lab", {"nurse"}, hospitals={3, 1, 2}), policy_dir)
    assert "currentTime" not in no_licence.spec.public_inputs
    assert "LicenceValid" not in no_licence.source
    assert "allowedRoles" not in fixed.spec.public_inputs and fixed.implied_inputs == {}
    assert "RoleAllowedFixed(NROLES, 2)" in fixed.source
    assert members.spec.public_inputs[-3:] == (
        "allowedHospital0",
        "allowedHospital1",
        "allowedHospital2",
    )
    assert members.implied_inputs["allowedHospital0"] == 1  # sorted, deterministic
    assert estimate_constraints(no_licence.policy) < estimate_constraints(base)
    assert estimate_constraints(fixed.policy) < estimate_constraints(base)
    assert len({no_licence.spec.circuit_hash, fixed.spec.circuit_hash}) == 2
    # Regenerating an unchanged policy keeps the file, hence the hash and keys.
    again = compile_policy(Policy("v1", "lab", {"nurse"}, licence_valid=False), policy_dir)
    assert again.spec.circuit_hash == no_licence.spec.circuit_hash


@pytest.fixture(scope="module")
def members_policy(policy_dir):
    policy = Policy(
        "lab_members", "lab", {"physician", "lab_technician"}, hospitals={HOSPITAL, 0xC0C}
    )
    return compile_policy(policy, policy_dir)


def test_hospital_restricted_variant_proves_end_to_end(members_policy, zk_prover):
    compiled = members_policy
    prover = zk_prover(compiled.spec)
    # groth16py's compile (recorded by the setup) matches the estimate and the budget.
    assert prover.keys.manifest.constraints == compiled.estimate <= compiled.spec.budget

    member = access_scenario("lab_technician", hospital_id=HOSPITAL)
    proof = assert_proves(prover, compiled.inputs(member.inputs()))
    assert proof.public_inputs[1] == compiled.policy.allowed_roles
    assert set(proof.public_inputs[-2:]) == {HOSPITAL, 0xC0C}
    assert_public_inputs_bound(prover, proof)

    outsider = access_scenario("lab_technician", hospital_id=OTHER_HOSPITAL)
    assert_rejects(prover, compiled.inputs(outsider.inputs()))
    nurse = access_scenario("nurse", hospital_id=HOSPITAL)
    assert_rejects(prover, compiled.inputs(nurse.inputs(allowedRoles=0)))
