"""zk.snarkjs: JSON conversions and cross-verification groth16py <-> snarkjs, both ways."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import groth16py
import pytest

from zk.exceptions import ProofInvalid, SetupError, WitnessError
from zk.field import P, R
from zk.models import Proof
from zk.snarkjs import (
    REPO_ROOT,
    proof_from_snarkjs,
    proof_to_snarkjs,
    run_snarkjs,
    snarkjs_bin,
    snarkjs_fullprove,
    snarkjs_verify,
)

MULTIPLIER = """pragma circom 2.0.0;
template Multiplier() {
    signal input a;
    signal input b;
    signal input c;
    signal output out;
    out <== a * b + c;
}
component main {public [a, b]} = Multiplier();
"""
INPUTS = {"a": 3, "b": 4, "c": 5}
PUBLIC = [17, 3, 4]  # out, a, b


@dataclass(frozen=True)
class Snark:
    folder: Path
    wasm: Path
    zkey: Path
    vk_json: str


@pytest.fixture(scope="module")
def snark(tmp_path_factory: pytest.TempPathFactory) -> Snark:
    """The multiplier compiled by circom2 (WASM) and set up by snarkjs.

    A single phase-1 contribution is needed: with tau = 1 the IC points are at infinity,
    which groth16py's snarkjs parser rejects.
    """
    folder = tmp_path_factory.mktemp("snarkjs")
    (folder / "mul.circom").write_text(MULTIPLIER)
    circom = REPO_ROOT / "node_modules/.bin/circom2"
    # circom2 only sees files under its working directory.
    subprocess.run(
        [str(circom), "mul.circom", "--r1cs", "--wasm", "-o", "."],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=120,
    )
    run_snarkjs("powersoftau", "new", "bn128", "4", "pot0.ptau", cwd=folder)
    run_snarkjs(
        "powersoftau",
        "contribute",
        "pot0.ptau",
        "pot1.ptau",
        "-e=test entropy",
        "--name=t",
        cwd=folder,
    )
    run_snarkjs("powersoftau", "prepare", "phase2", "pot1.ptau", "pot.ptau", cwd=folder)
    run_snarkjs("groth16", "setup", "mul.r1cs", "pot.ptau", "mul.zkey", cwd=folder)
    run_snarkjs("zkey", "export", "verificationkey", "mul.zkey", "vk.json", cwd=folder)
    return Snark(
        folder, folder / "mul_js/mul.wasm", folder / "mul.zkey", (folder / "vk.json").read_text()
    )


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory):
    src = tmp_path_factory.mktemp("native") / "mul.circom"
    src.write_text(MULTIPLIER)
    pk, vk = groth16py.setup_circom(str(src))
    return vk, Proof(groth16py.prove(pk, INPUTS), tuple(PUBLIC))


def test_snarkjs_bin_is_the_repository_one() -> None:
    assert snarkjs_bin() == REPO_ROOT / "node_modules/.bin/snarkjs"
    assert snarkjs_bin().exists()


def test_conversion_layout_and_round_trip() -> None:
    words = list(range(1, 9))
    proof = Proof.from_words(words, (7, 8))
    proof_json, public = proof_to_snarkjs(proof)
    assert proof_json["pi_a"] == ["1", "2", "1"]
    assert proof_json["pi_b"] == [["4", "3"], ["6", "5"], ["1", "0"]]
    assert proof_json["pi_c"] == ["7", "8", "1"]
    assert public == ["7", "8"]
    assert proof_from_snarkjs(proof_json, public) == proof
    assert proof_from_snarkjs(json.dumps(proof_json), json.dumps(public)) == proof


def test_groth16py_reads_our_snarkjs_json(native) -> None:
    """groth16py's own snarkjs parser accepts our conversion: the B order is right."""
    vk, proof = native
    proof_json, public = proof_to_snarkjs(proof)
    verifier = groth16py.Verifier(vk)
    assert verifier.verify_snarkjs(json.dumps(proof_json), json.dumps(public))
    swapped = {**proof_json, "pi_b": [list(reversed(c)) for c in proof_json["pi_b"][:2]]}
    swapped["pi_b"].append(["1", "0"])
    try:
        accepted = verifier.verify_snarkjs(json.dumps(swapped), json.dumps(public))
    except (groth16py.EncodingError, groth16py.VerificationError):
        accepted = False
    assert not accepted


def test_groth16py_proof_verified_by_snarkjs(native) -> None:
    vk, proof = native
    assert snarkjs_verify(vk.to_json(), proof)
    assert not snarkjs_verify(json.loads(vk.to_json()), Proof(proof.data, (17, 3, 5)))
    assert not snarkjs_verify(vk.to_json(), Proof(proof.data, (17 + R, 3, 4)))


def test_snarkjs_proof_verified_by_groth16py(snark: Snark) -> None:
    proof = snarkjs_fullprove(snark.wasm, snark.zkey, INPUTS)
    assert proof.public_inputs == tuple(PUBLIC)
    vk = groth16py.VerifyingKey.from_snarkjs(snark.vk_json)
    verifier = groth16py.Verifier(vk)
    assert verifier.verify(proof.data, list(proof.public_inputs))
    assert not verifier.verify(proof.data, [17, 4, 3])


def test_groth16py_proof_from_snarkjs_zkey_verified_by_snarkjs(snark: Snark) -> None:
    pk, vk = groth16py.import_zkey(str(snark.zkey), str(snark.folder / "mul.circom"))
    assert json.loads(vk.to_json())["IC"] == json.loads(snark.vk_json)["IC"]
    proof = Proof(groth16py.prove(pk, {"a": 6, "b": 7, "c": 8}), (50, 6, 7))
    assert snarkjs_verify(snark.vk_json, proof)


def test_fullprove_failure_is_a_clean_witness_error(snark: Snark) -> None:
    with pytest.raises(WitnessError) as info:
        snarkjs_fullprove(snark.wasm, snark.zkey, {"a": 3, "b": 4})
    message = str(info.value)
    assert "Not all inputs have been set" in message
    assert "\x1b[" not in message and "at " not in message.split("failed:")[1][:4]
    assert ".cjs:" not in message  # no JavaScript stack frames
    with pytest.raises(SetupError):
        snarkjs_fullprove(snark.wasm, snark.folder / "missing.zkey", INPUTS)
    with pytest.raises(WitnessError):
        snarkjs_fullprove(snark.wasm, snark.zkey, {"a": True, "b": 4, "c": 5})


def test_run_snarkjs_raises_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="snarkjs zkey export failed"):
        run_snarkjs("zkey", "export", "verificationkey", "nope.zkey", "vk.json", cwd=tmp_path)


@pytest.mark.parametrize(
    ("proof_json", "public"),
    [
        ("{", "[]"),
        ({"pi_a": ["1", "2", "1"]}, []),
        (
            {"pi_a": ["1", "2", "2"], "pi_b": [["1", "2"], ["3", "4"], ["1", "0"]]},
            [],
        ),
        (
            {
                "pi_a": ["1", "2", "1"],
                "pi_b": [["1", "2"], ["3", "4"], ["1", "0"]],
                "pi_c": [str(P), "2", "1"],
            },
            [],
        ),
        (
            {
                "pi_a": ["1", "2", "1"],
                "pi_b": [["1", "2"], ["3", "4"], ["1", "0"]],
                "pi_c": ["1", "2", "1"],
            },
            [str(R)],
        ),
        (
            {
                "pi_a": ["1", "2", "1"],
                "pi_b": [["1", "2"], "34", ["1", "0"]],
                "pi_c": ["1", "2", "1"],
            },
            [],
        ),
        (
            {
                "pi_a": ["x", "2", "1"],
                "pi_b": [["1", "2"], ["3", "4"], ["1", "0"]],
                "pi_c": ["1", "2", "1"],
            },
            [],
        ),
        ({"protocol": "plonk"}, []),
        ([], []),
    ],
)
def test_malformed_snarkjs_json(proof_json: object, public: object) -> None:
    with pytest.raises(ProofInvalid):
        proof_from_snarkjs(proof_json, public)  # type: ignore[arg-type]


def test_clinician_access_witness_from_our_wasm_satisfies_our_r1cs(zk_prover, tmp_path) -> None:
    """The circom2 build (r1cs + wasm) that the ceremony and snarkjs use is the circuit
    groth16py proves: snarkjs computes the witness from our wasm, checks it against our r1cs,
    and groth16py proves from that witness with its own keys."""
    from zk.compiler import compile_circuit
    from zk.credentials import access_context, roles_mask
    from zk.snarkjs import _json_inputs
    from zk.testing import NOW, SIGNAL, access_scenario

    prover = zk_prover("clinician_access")
    report = compile_circuit(prover.spec)
    s = access_scenario("nurse", roles_mask(["nurse", "midwife"]), others=6, position=3)
    inputs = s.inputs()
    (tmp_path / "in.json").write_text(json.dumps(_json_inputs(inputs)))
    run_snarkjs("wtns", "calculate", report.wasm_path, "in.json", "w.wtns", cwd=tmp_path)
    out = run_snarkjs("wtns", "check", report.r1cs_path, "w.wtns", cwd=tmp_path)
    assert "WITNESS IS CORRECT" in out.upper()
    data = groth16py.prove_wtns(prover.keys.proving_key, str(tmp_path / "w.wtns"))
    public = tuple(inputs[n] for n in prover.spec.public_inputs)
    assert prover.verifier.verify(Proof(bytes(data), public))
    # A mask without the nurse bit: the wasm's own constraint assertions refuse the witness.
    bad = {**inputs, "context": access_context(NOW, roles_mask(["physician"]), 0, SIGNAL)}
    (tmp_path / "bad.json").write_text(json.dumps(_json_inputs(bad)))
    with pytest.raises(WitnessError):
        run_snarkjs(
            "wtns",
            "calculate",
            report.wasm_path,
            "bad.json",
            "b.wtns",
            cwd=tmp_path,
            error=WitnessError,
        )
