"""A pure-Python Groth16 verifier (py_ecc) to cross-check groth16py and the Solidity verifiers.

Independent code paths are the point: this one shares no code with arkworks or snarkjs,
only the verification-key JSON format. It takes seconds per proof, so it is for tests,
audits and ``emr-node zk verify --reference``, not for serving requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from py_ecc.optimized_bn128 import (
    FQ,
    FQ2,
    FQ12,
    add,
    b,
    b2,
    curve_order,
    is_inf,
    is_on_curve,
    multiply,
    neg,
)
from py_ecc.optimized_bn128.optimized_pairing import (
    cast_point_to_fq12,
    final_exponentiate,
    miller_loop,
    twist,
)

from zk.abc import VerifierAPI
from zk.exceptions import SetupError
from zk.field import P, R
from zk.models import PROOF_BYTES, Proof

G1Point = tuple[FQ, FQ, FQ]
G2Point = tuple[FQ2, FQ2, FQ2]


class _Malformed(Exception):
    """Internal: a coordinate or point that no valid proof or key contains."""


def _coord(value: object) -> int:
    number = int(value) if isinstance(value, str) else value  # type: ignore[arg-type]
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < P:
        raise _Malformed
    return number


def _g1(x: int, y: int) -> G1Point:
    """G1 point from affine coordinates; (0, 0) is the point at infinity (EVM convention).
    G1 has cofactor 1, so on the curve means in the group."""
    if x == 0 and y == 0:
        return (FQ(1), FQ(1), FQ(0))
    point = (FQ(x), FQ(y), FQ(1))
    if not is_on_curve(point, b):
        raise _Malformed
    return point


def _g2(x0: int, x1: int, y0: int, y1: int) -> G2Point:
    """G2 point from affine coordinates c0 + c1*u; must lie in the prime-order subgroup
    (the twist has a large cofactor, so on-curve is not enough)."""
    if x0 == x1 == y0 == y1 == 0:
        return (FQ2.one(), FQ2.one(), FQ2.zero())
    point = (FQ2([x0, x1]), FQ2([y0, y1]), FQ2.one())
    if not is_on_curve(point, b2) or not is_inf(multiply(point, curve_order)):
        raise _Malformed
    return point


def _miller(q: G2Point, p: G1Point) -> FQ12:
    if is_inf(q) or is_inf(p):
        return FQ12.one()
    return miller_loop(twist(q), cast_point_to_fq12(p), final_exponentiate=False)


def _affine_g1(data: Sequence[Any]) -> G1Point:
    """snarkjs projective JSON [x, y, z] (z = 1, or z = 0 for infinity) to a point."""
    if len(data) != 3:
        raise _Malformed
    x, y, z = (_coord(v) for v in data)
    if z == 0:
        return (FQ(1), FQ(1), FQ(0))
    if z != 1:
        raise _Malformed
    return _g1(x, y)


def _affine_g2(data: Sequence[Any]) -> G2Point:
    if len(data) != 3 or any(len(c) != 2 for c in data):
        raise _Malformed
    (x0, x1), (y0, y1), (z0, z1) = ((_coord(a), _coord(c)) for a, c in data)
    if (z0, z1) == (0, 0):
        return (FQ2.one(), FQ2.one(), FQ2.zero())
    if (z0, z1) != (1, 0):
        raise _Malformed
    return _g2(x0, x1, y0, y1)


class ReferenceVerifier(VerifierAPI):
    """Groth16 over BN254 from a snarkjs ``verification_key.json`` (dict or JSON text), as
    ``groth16py.VerifyingKey.to_json()`` also writes it."""

    def __init__(self, verification_key: Mapping[str, Any] | str) -> None:
        try:
            vk = (
                json.loads(verification_key)
                if isinstance(verification_key, str)
                else verification_key
            )
            if vk.get("protocol") != "groth16" or vk.get("curve") not in ("bn128", "bn254"):
                raise SetupError("not a Groth16 BN254 verification key")
            self._alpha = _affine_g1(vk["vk_alpha_1"])
            self._beta = _affine_g2(vk["vk_beta_2"])
            self._gamma = _affine_g2(vk["vk_gamma_2"])
            self._delta = _affine_g2(vk["vk_delta_2"])
            self._ic = [_affine_g1(p) for p in vk["IC"]]
            n_public = int(vk.get("nPublic", len(self._ic) - 1))
        except SetupError:
            raise
        except (_Malformed, ValueError, TypeError, KeyError, AttributeError):
            raise SetupError("malformed verification key") from None
        if n_public != len(self._ic) - 1:
            raise SetupError("verification key IC length does not match nPublic")
        self._n_public = n_public
        # e(alpha, beta) is the same for every proof: computed once, on first use.
        self._alpha_beta: FQ12 | None = None

    @property
    def n_public(self) -> int:
        return self._n_public

    def verify(self, proof: Proof) -> bool:
        try:
            return self._verify(proof)
        except Exception:  # attacker-controlled bytes never raise out of a verifier
            return False

    def _verify(self, proof: Proof) -> bool:
        inputs = tuple(proof.public_inputs)
        if len(proof.data) != PROOF_BYTES or len(inputs) != self._n_public:
            return False
        for x in inputs:
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < R:
                return False
        try:
            w = [_coord(int.from_bytes(proof.data[i : i + 32], "big")) for i in range(0, 256, 32)]
            a = _g1(w[0], w[1])
            b_point = _g2(w[3], w[2], w[5], w[4])  # EVM order puts c1 before c0
            c = _g1(w[6], w[7])
        except _Malformed:
            return False

        vk_x = self._ic[0]
        for x, point in zip(inputs, self._ic[1:], strict=True):
            if x:
                vk_x = add(vk_x, multiply(point, x))

        if self._alpha_beta is None:
            self._alpha_beta = final_exponentiate(_miller(self._beta, self._alpha))
        # e(A, B) == e(alpha, beta) * e(vk_x, gamma) * e(C, delta)
        f = _miller(b_point, a) * _miller(self._gamma, neg(vk_x)) * _miller(self._delta, neg(c))
        return final_exponentiate(f) == self._alpha_beta
