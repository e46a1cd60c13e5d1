"""Groth16Prover input validation and error mapping; Groth16Verifier never raising on
malformed proofs; prove/verify timings of ClinicianAccess."""

from __future__ import annotations

import pytest

from zk.credentials import age_inputs
from zk.exceptions import InputError, WitnessError
from zk.field import P, R
from zk.models import Proof
from zk.prover import UNSATISFIED, validate_inputs
from zk.testing import access_scenario
from zk.verifier import Groth16Verifier, verify_words


@pytest.fixture(scope="module")
def age(zk_prover):
    return zk_prover("age_at_least")


@pytest.fixture(scope="module")
def good_inputs():
    return age_inputs(19800101, 42, 20250615, 18, bytes(32))


@pytest.fixture(scope="module")
def proof(age, good_inputs) -> Proof:
    return age.prove(good_inputs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"salt": None}, "missing input signal salt"),
        ({"extra": 1}, "no input signal 'extra'"),
        ({"minAge": True}, "signal minAge must be an integer"),
        ({"minAge": "18"}, "signal minAge must be an integer"),
        ({"salt": R}, "signal salt is not a BN254 scalar field element"),
        ({"salt": -1}, "signal salt is not a BN254 scalar field element"),
    ],
)
def test_malformed_inputs_name_the_signal_not_the_value(age, good_inputs, change, message):
    inputs = {**good_inputs, **change}
    inputs = {k: v for k, v in inputs.items() if v is not None}
    with pytest.raises(InputError, match=message) as info:
        age.prove(inputs)
    assert not isinstance(info.value, WitnessError)
    assert str(good_inputs["salt"]) not in str(info.value)


def test_array_signals_are_checked_for_shape_and_range(zk_prover):
    spec = zk_prover("clinician_access").spec
    inputs = access_scenario("nurse").inputs()
    validate_inputs(spec, inputs)
    with pytest.raises(InputError, match="siblings must have 20 elements, got 19"):
        validate_inputs(spec, {**inputs, "siblings": inputs["siblings"][:19]})
    with pytest.raises(InputError, match=r"siblings\[3\] is not a BN254"):
        validate_inputs(spec, {**inputs, "siblings": [0, 0, 0, R] + [0] * 16})
    with pytest.raises(InputError, match="siblings must be a list"):
        validate_inputs(spec, {**inputs, "siblings": 0})
    with pytest.raises(InputError, match="signal root must be an integer"):
        validate_inputs(spec, {**inputs, "root": [1]})


def test_unsatisfied_circuit_is_a_witness_error(age, good_inputs):
    with pytest.raises(WitnessError, match=UNSATISFIED):
        age.prove({**good_inputs, "currentDate": 19971231})


def test_public_inputs_are_in_spec_order(age, good_inputs, proof):
    expected = tuple(good_inputs[n] for n in age.spec.public_inputs)
    assert age.public_inputs(good_inputs) == expected == proof.public_inputs


def test_verifier_accepts_the_proof_and_any_verify_many_mix(age, proof):
    v = age.verifier
    assert v.n_public == 4
    assert v.verify(proof)
    tampered = Proof(proof.data, (proof.public_inputs[0], 20250616, *proof.public_inputs[2:]))
    assert v.verify_many([proof, tampered, proof]) == [True, False, True]
    assert verify_words(v, proof.words, proof.public_inputs)


def test_verifier_from_vk_json_round_trips(age, proof):
    v = Groth16Verifier.from_json(age.keys.verification_key_json)
    assert v.verify(proof)


def test_verifier_returns_false_on_malformed_proofs(age, proof):
    v = age.verifier
    words = list(proof.words)
    pub = proof.public_inputs

    def with_word(i: int, value: int) -> Proof:
        w = list(words)
        w[i] = value
        return Proof(b"".join(x.to_bytes(32, "big") for x in w), pub)

    cases = [
        Proof(proof.data, pub[:3]),  # too few public inputs
        Proof(proof.data, (*pub, 0)),  # too many
        Proof(proof.data, (pub[0] + R, *pub[1:])),  # >= R (same residue!)
        Proof(proof.data, (-1, *pub[1:])),
        Proof(proof.data, (True, *pub[1:])),
        with_word(1, (words[1] + 1) % P),  # A off the curve
        with_word(6, P),  # coordinate >= P
        with_word(0, 2**256 - 1),
        with_word(2, (words[2] + 1) % P),  # B off the curve / twist
        Proof(bytes(256), pub),  # all-zero points
        "not a proof",
    ]
    assert v.verify_many(cases) == [False] * len(cases)  # type: ignore[arg-type]
    assert not verify_words(v, words[:7], pub)
    assert not verify_words(v, [*words[:7], P], pub)
