"""Fuzzing the off-chain verifier entry points: whatever the bytes, a verifier answers
False, never raises, never accepts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zk.field import P, R
from zk.models import Proof
from zk.reference import ReferenceVerifier
from zk.testing import access_scenario
from zk.verifier import verify_words

words = st.one_of(
    st.integers(0, P - 1),
    st.integers(P, 2**256 - 1),
    st.sampled_from([0, 1, 2, P - 1, P, R, R - 1]),
)
inputs = st.one_of(st.integers(0, R - 1), st.integers(R, 2**256), st.integers(-(2**64), -1))


@pytest.fixture(scope="module")
def clinician(zk_prover):
    prover = zk_prover("clinician_access")
    return prover, prover.prove(access_scenario("physician").inputs())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    proof_words=st.lists(words, min_size=0, max_size=10),
    public=st.lists(inputs, min_size=0, max_size=8),
)
def test_random_words_never_verify_nor_raise(clinician, proof_words, public) -> None:
    prover, _proof = clinician
    assert verify_words(prover.verifier, proof_words, public) is False


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(0, 7), value=words, pub_index=st.integers(0, 3), delta=st.integers(1, 2**64)
)
def test_one_changed_word_or_input_is_refused(clinician, index, value, pub_index, delta) -> None:
    prover, proof = clinician
    w = list(proof.words)
    if w[index] != value:
        w[index] = value
        assert not verify_words(prover.verifier, w, proof.public_inputs)
    public = list(proof.public_inputs)
    public[pub_index] = (public[pub_index] + delta) % R
    assert not prover.verifier.verify(Proof(proof.data, tuple(public)))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    proof_words=st.lists(words, min_size=8, max_size=8),
    public=st.lists(inputs, min_size=4, max_size=4),
)
def test_reference_verifier_agrees_on_random_input(clinician, proof_words, public) -> None:
    prover, proof = clinician
    reference = ReferenceVerifier(prover.keys.verification_key_json)
    assert reference.verify(proof)
    data = b"".join((w % 2**256).to_bytes(32, "big") for w in proof_words)
    assert reference.verify(Proof(data, tuple(public))) is False  # type: ignore[arg-type]
