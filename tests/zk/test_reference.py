"""zk.reference (py_ecc) agrees with groth16py on valid, tampered and malformed proofs."""

from __future__ import annotations

import json
from pathlib import Path

import groth16py
import pytest
from py_ecc.optimized_bn128 import FQ2, b2, curve_order, is_inf, is_on_curve, multiply

from zk.exceptions import SetupError
from zk.field import P, R
from zk.models import Proof
from zk.reference import ReferenceVerifier

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


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):
    src: Path = tmp_path_factory.mktemp("reference") / "multiplier.circom"
    src.write_text(MULTIPLIER)
    pk, vk = groth16py.setup_circom(str(src))
    proof = groth16py.prove(pk, {"a": 3, "b": 4, "c": 5})
    other = groth16py.prove(pk, {"a": 6, "b": 7, "c": 8})
    return vk, proof, other, ReferenceVerifier(vk.to_json())


def arkworks(vk: groth16py.VerifyingKey, data: bytes, inputs: list[int]) -> bool:
    try:
        return groth16py.Verifier(vk).verify(data, inputs)
    except (groth16py.EncodingError, groth16py.VerificationError, OverflowError):
        return False  # groth16py raises on malformed input (OverflowError for ints < 0)


def words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 32], "big") for i in range(0, 256, 32)]


def pack(ws: list[int]) -> bytes:
    return b"".join(w.to_bytes(32, "big") for w in ws)


def agree(keys, data: bytes, inputs: list[int]) -> bool:
    vk, _, _, reference = keys
    expected = arkworks(vk, data, inputs)
    assert reference.verify(Proof(data, tuple(inputs))) == expected
    return expected


def test_valid_proof(keys) -> None:
    _, proof, other, reference = keys
    assert reference.n_public == 3
    assert agree(keys, proof, [17, 3, 4])
    assert agree(keys, other, [50, 6, 7])


def test_tampered_input(keys) -> None:
    assert not agree(keys, keys[1], [17, 3, 5])


def test_proof_for_other_inputs(keys) -> None:
    # Well-formed points, wrong statement: a full pairing check that must fail.
    mixed = keys[1][:64] + keys[2][64:]
    assert not agree(keys, mixed, [17, 3, 4])


def test_input_not_below_r(keys) -> None:
    assert not agree(keys, keys[1], [17 + R, 3, 4])
    assert not agree(keys, keys[1], [17, 3, -1])
    assert not agree(keys, keys[1], [17, 3, 1 << 256])


def test_wrong_input_count(keys) -> None:
    assert not agree(keys, keys[1], [17, 3])
    assert not agree(keys, keys[1], [17, 3, 4, 0])


@pytest.mark.parametrize("word", [1, 4, 7])
def test_off_curve_point(keys, word: int) -> None:
    ws = words(keys[1])
    ws[word] = (ws[word] + 1) % P
    assert not agree(keys, pack(ws), [17, 3, 4])


@pytest.mark.parametrize("word", [0, 2, 6])
def test_coordinate_not_below_p(keys, word: int) -> None:
    ws = words(keys[1])
    ws[word] += P  # same residue: only the range check can catch it
    assert not agree(keys, pack(ws), [17, 3, 4])


def _fq2_sqrt(a: FQ2) -> FQ2 | None:
    """Square root in F_p^2 (p = 3 mod 4; Adj & Rodriguez-Henriquez, algorithm 9)."""
    a1 = a ** ((P - 3) // 4)
    alpha = a1 * a1 * a
    x0 = a1 * a
    if alpha == FQ2([P - 1, 0]):
        root = FQ2([0, 1]) * x0
    else:
        root = (FQ2.one() + alpha) ** ((P - 1) // 2) * x0
    return root if root * root == a else None


def test_b_on_twist_but_outside_subgroup(keys) -> None:
    for x0 in range(1, 50):
        x = FQ2([x0, 1])
        y = _fq2_sqrt(x**3 + b2)
        if y is not None:
            break
    assert y is not None
    point = (x, y, FQ2.one())
    assert is_on_curve(point, b2) and not is_inf(multiply(point, curve_order))
    ws = words(keys[1])
    ws[2:6] = [int(x.coeffs[1]), int(x.coeffs[0]), int(y.coeffs[1]), int(y.coeffs[0])]
    assert not agree(keys, pack(ws), [17, 3, 4])


def test_garbage_never_raises(keys) -> None:
    reference = keys[3]
    assert not reference.verify(Proof(bytes(256), (17, 3, 4)))
    assert not reference.verify(Proof(b"\xff" * 256, (17, 3, 4)))
    assert not reference.verify(Proof(keys[1], (17, 3, "4")))  # type: ignore[arg-type]


def test_accepts_dict_and_rejects_malformed_keys(keys) -> None:
    vk = json.loads(keys[0].to_json())
    assert ReferenceVerifier(vk).n_public == 3
    broken = {**vk, "vk_alpha_1": [vk["vk_alpha_1"][0], "5", "1"]}
    for bad in (
        "not json",
        {**vk, "protocol": "plonk"},
        broken,
        {**vk, "nPublic": 2},
        {k: v for k, v in vk.items() if k != "IC"},
    ):
        with pytest.raises(SetupError):
            ReferenceVerifier(bad)  # type: ignore[arg-type]
