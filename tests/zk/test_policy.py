"""The policy DSL: text and Python front ends agree, invalid policies are refused, the default
policy generates clinician_access, and a generated variant proves end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils import keccak

from zk.compiler import check_budget, compile_circuit, parse_r1cs
from zk.credentials import roles_mask
from zk.exceptions import CircuitError
from zk.policy import (
    Policy,
    PolicyError,
    compile_policy,
    estimate_constraints,
    parse_policy,
)
from zk.registry import get_circuit
from zk.testing import (
    HOSPITAL,
    NOW,
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
OTHER_HOSPITAL = 11


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
    a = parse_policy(text)
    assert a.hospitals == frozenset({10, 11}) and not a.licence_valid and not a.is_default


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
        ("policy p { category lab; roles nurse; hospitals 0; }", "member id in 1..2"),
        ("policy p { category lab; roles nurse; hospitals 4294967296; }", "member id in 1..2"),
        ("policy p { category lab; roles nurse; mask fixed; }", "'mask' was removed in v2"),
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
    assert compiled.implied_inputs == {}
    assert compiled.category_mask == 0b11
    assert compiled.category_id == keccak(text="lab")
    generated = compile_circuit(compiled.spec)
    expected = compile_circuit(reference)
    assert generated.constraints == expected.constraints == compiled.estimate
    assert generated.wires == expected.wires
    assert {c.component: c.constraints for c in generated.components} == {
        c.component: c.constraints for c in expected.components
    }
    # The same R1CS, constraint for constraint (names aside): same wires in every constraint.
    assert parse_r1cs(Path(generated.r1cs_path).read_bytes()) == parse_r1cs(
        Path(expected.r1cs_path).read_bytes()
    )
    check_budget(generated, compiled.spec)
    # Only lib templates: the generated main declares no template of its own but the policy's.
    assert compiled.source.count("template ") == 1
    assert 'include "lean_imt.circom";' in compiled.source
    # Roles are the category mask, not circuit structure: another role set, same circuit.
    other = compile_policy(Policy("lab_read", "lab", {"pharmacist"}), policy_dir / "other")
    assert compile_circuit(other.spec).constraints == expected.constraints


def test_options_change_the_generated_circuit(policy_dir):
    base = Policy("v", "lab", {"nurse"})
    no_licence = compile_policy(Policy("v1", "lab", {"nurse"}, licence_valid=False), policy_dir)
    members = compile_policy(Policy("v3", "lab", {"nurse"}, hospitals={3, 1, 2}), policy_dir)
    assert no_licence.spec.public_inputs == get_circuit("clinician_access").public_inputs
    assert "LicenceValid" not in no_licence.source and "Num2Bits(40)" in no_licence.source
    assert members.spec.public_inputs[-3:] == (
        "allowedHospital0",
        "allowedHospital1",
        "allowedHospital2",
    )
    assert members.implied_inputs["allowedHospital0"] == 1  # sorted, deterministic
    assert estimate_constraints(members.policy) == estimate_constraints(base) + 2
    assert compile_circuit(members.spec).constraints == members.estimate
    assert compile_circuit(no_licence.spec).constraints == no_licence.estimate
    # Regenerating an unchanged policy keeps the file, hence the hash and keys.
    again = compile_policy(Policy("v1", "lab", {"nurse"}, licence_valid=False), policy_dir)
    assert again.spec.circuit_hash == no_licence.spec.circuit_hash


@pytest.fixture(scope="module")
def members_policy(policy_dir):
    policy = Policy("lab_members", "lab", {"physician", "lab_technician"}, hospitals={HOSPITAL, 12})
    return compile_policy(policy, policy_dir)


def test_hospital_restricted_variant_proves_end_to_end(members_policy, zk_prover):
    compiled = members_policy
    prover = zk_prover(compiled.spec)
    # groth16py's compile (recorded by the setup) matches the estimate and the budget.
    assert prover.keys.manifest.constraints == compiled.estimate <= compiled.spec.budget
    mask = compiled.category_mask

    member = access_scenario("lab_technician", mask, hospital_id=HOSPITAL)
    proof = assert_proves(prover, compiled.inputs(member.inputs()))
    assert proof.public_inputs[1] >> 40 & 0xFFFF == mask
    assert set(proof.public_inputs[-2:]) == {HOSPITAL, 12}
    assert_public_inputs_bound(prover, proof)

    # A lab technician of a hospital outside the set, with a valid class consent: refused.
    outsider = access_scenario("lab_technician", mask, hospital_id=OTHER_HOSPITAL)
    assert_proves(zk_prover("clinician_access"), outsider.inputs())
    assert_rejects(prover, compiled.inputs(outsider.inputs()))
    # A nurse of a member hospital under the category mask: refused by the role check.
    nurse = access_scenario("nurse", mask, hospital_id=HOSPITAL)
    assert_rejects(prover, compiled.inputs(nurse.inputs()))


def test_licence_any_variant_ignores_expiry_but_keeps_the_attributes_bound(policy_dir, zk_prover):
    compiled = compile_policy(Policy("lab_any", "lab", {"nurse"}, licence_valid=False), policy_dir)
    prover = zk_prover(compiled.spec)
    s = access_scenario("nurse", licence_expiry=NOW - 1)  # expired licence
    assert_rejects(zk_prover("clinician_access"), s.inputs())
    assert_proves(prover, compiled.inputs(s.inputs()))
    # The aliasing split role + 16 / expiry - 1 is still refused by the range checks.
    e = s.issued.licence_expiry
    assert_rejects(prover, compiled.inputs(s.inputs(role=1 + 16, licenceExpiry=e - 1)))
