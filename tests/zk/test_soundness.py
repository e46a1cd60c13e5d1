"""Issue 9 item 8: mutation tests for every circuit, no unconstrained ``<--`` in our sources,
and the circheck static analyser finds nothing in our code."""

from __future__ import annotations

import pytest

from zk.credentials import age_inputs
from zk.field import R
from zk.policy import Policy, compile_policy
from zk.registry import CircuitSpec, get_circuit
from zk.soundness import (
    mutation_survivors,
    our_sources,
    private_mutations,
    public_mutation_survivors,
    run_circheck,
    unconstrained_hints,
)
from zk.testing import SIGNAL, access_scenario, assert_proves, assert_rejects

# +-1 and flips of the bits around every range boundary the circuits use.
BITS = (0, 1, 4, 32, 36, 40, 64, 252)


@pytest.fixture(scope="module")
def ca(zk_prover):
    return zk_prover("clinician_access")


@pytest.fixture(scope="module")
def age(zk_prover):
    return zk_prover("age_at_least")


def test_every_private_input_of_clinician_access_is_bound(ca):
    s = access_scenario("nurse", others=5, position=2)
    depth = s.proof.depth
    assert depth == 3

    def beyond_depth(name, position, _inputs):
        # LeanIMT proofs of depth d ignore siblings d..19 by design (their nodes are never
        # selected as the root).
        return name == "siblings" and position >= depth

    survivors, tried = mutation_survivors(ca, s.inputs(), bits=BITS, skip=beyond_depth)
    assert tried >= 80
    # Index bits d..19 are as free as those siblings; nothing else may survive.
    assert survivors == [f"index bit {b}" for b in BITS if depth <= b < 20]


def test_every_private_input_of_age_at_least_is_bound(age):
    inputs = age_inputs(19800615, 987654321, 20250615, 18, SIGNAL)
    survivors, tried = mutation_survivors(age, inputs, bits=BITS)
    assert tried == 2 * (2 + len(BITS))
    assert survivors == []


@pytest.mark.parametrize("circuit", ["clinician_access", "age_at_least"])
def test_every_public_input_bit_is_bound(zk_prover, circuit):
    prover = zk_prover(circuit)
    if circuit == "clinician_access":
        inputs = access_scenario("physician", others=3).inputs()
    else:
        inputs = age_inputs(19800615, 5, 20250615, 18, SIGNAL)
    proof = assert_proves(prover, inputs)
    survivors, tried = public_mutation_survivors(prover.verifier, proof, prover.spec.public_inputs)
    assert tried > 250 * prover.spec.n_public
    assert survivors == []


def test_clinician_access_witness_with_a_changed_public_input_is_rejected(ca):
    # root, scope and the nullifier cannot move under the same private inputs (the context
    # can, to another true statement: an earlier time, a wider mask).
    s = access_scenario("nurse", others=2)
    inputs = s.inputs()
    for name in ("root", "scope", "epochNullifier"):
        for delta in (1, -1):
            assert_rejects(ca, {**inputs, name: (inputs[name] + delta) % R})


def test_private_mutations_cover_every_private_signal_once_per_change(ca):
    s = access_scenario("nurse", others=0)
    mutations = list(private_mutations(ca.spec, s.inputs(), bits=(0,)))
    signals = {m.signal for m in mutations}
    assert signals == {
        "secret",
        "hospitalId",
        "role",
        "licenceExpiry",
        "depth",
        "index",
        *(f"siblings[{i}]" for i in range(20)),
    }
    assert len(mutations) == 3 * len(signals)
    for m in mutations:
        assert all(m.inputs[p] == s.inputs()[p] for p in ca.spec.public_inputs)


# -- <-- without a constraint ------------------------------------------------------------------


def test_our_circuits_have_no_unconstrained_hint(tmp_path):
    sources = our_sources()
    assert {"clinician_access.circom", "lean_imt.circom", "age_at_least.circom"} <= {
        p.name for p in sources
    }
    generated = compile_policy(Policy("members", "lab", {"nurse"}, hospitals={1, 2}), tmp_path)
    findings = [f for p in [*sources, generated.spec.source] for f in unconstrained_hints(p)]
    assert findings == []


def test_unconstrained_hint_is_found(tmp_path):
    bad = tmp_path / "bad.circom"
    bad.write_text(
        """pragma circom 2.0.0;
template Inverse() {
    signal input x;
    signal output y;
    signal output z[2];
    // y <-- 1 / x;   (a comment is not code)
    y <-- 1 / x;
    z[0] <-- x * 2;
    z[0] * 1 === x * 2;
    x * 3 --> z[1];
}
template Fine() {
    signal input x;
    signal output y;
    y <-- 1 / x;
    y * x === 1;
}
"""
    )
    findings = unconstrained_hints(bad)
    assert [(f.line, f.signal) for f in findings] == [(7, "y"), (10, "z")]
    assert "Inverse" in findings[0].message


# -- circheck (PyPI), a static analyser for under-constrained signals ---------------------------

# What circheck 0.3.0 reports inside circomlib for our circuits, each checked and accepted:
# - Decoder (multiplexer.circom:85), used by LeanIMTRoot for the depth: `out[i] <-- inp == i`
#   is a hint, pinned by out[i] * (inp - i) === 0 and sum(out) === success, with our
#   `success === 1`; exactly one out is 1, at inp. circheck cannot match a ternary to them.
# - LessEqThan (comparators.circom:111-112), used by DateAtLeast: its inputs are
#   dateOfBirth + minAge * 10000 and currentDate, range checked by Num2Bits(32) and
#   Num2Bits(8) in dates.circom (< 2^33): circheck does not follow a bound through a sum.
ACCEPTED_IN_CIRCOMLIB = {
    "clinician_access": {
        ("multiplexer.circom", 85, "assignment missue"),
        ("multiplexer.circom", 85, "nondeterministic data flow"),
    },
    "age_at_least": {
        ("comparators.circom", 111, "type mismatch"),
        ("comparators.circom", 112, "type mismatch"),
    },
}


@pytest.mark.parametrize("circuit", sorted(ACCEPTED_IN_CIRCOMLIB))
def test_circheck_finds_nothing_in_our_code(circuit):
    report = run_circheck(get_circuit(circuit))
    ours = {p.name for p in our_sources()}
    assert report.in_files(ours) == []
    found = {(f.file, f.line, f.detector) for f in report.outside(ours)}
    assert found == ACCEPTED_IN_CIRCOMLIB[circuit], "\n".join(map(str, report.findings))


def test_circheck_does_flag_an_unconstrained_output(tmp_path):
    # The analyser is really running: an output computed with <-- and never constrained.
    src = tmp_path / "leaky.circom"
    src.write_text(
        "pragma circom 2.0.0;\n"
        "template Leaky() { signal input a; signal output b; b <-- a * a; }\n"
        "component main {public [a]} = Leaky();\n"
    )
    spec = CircuitSpec("leaky", src, ("a",), (), budget=10)
    report = run_circheck(spec)
    assert any(f.file == "leaky.circom" for f in report.findings)
