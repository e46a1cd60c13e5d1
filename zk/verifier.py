"""Groth16 verification over groth16py (arkworks), one verification key per instance."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import groth16py

from zk.abc import VerifierAPI
from zk.exceptions import ProofInvalid, SetupError
from zk.field import R
from zk.models import PROOF_BYTES, Proof

# Everything groth16py (or its argument conversion) may raise on hostile bytes or inputs.
_BAD_INPUT = (
    groth16py.EncodingError,
    groth16py.VerificationError,
    ValueError,
    TypeError,
    OverflowError,
)


class Groth16Verifier(VerifierAPI):
    """``verify`` never raises: anything malformed is simply not a valid proof."""

    def __init__(self, verifying_key: groth16py.VerifyingKey) -> None:
        self._vk = verifying_key
        self._verifier = groth16py.Verifier(verifying_key)

    @classmethod
    def from_json(cls, vk_json: str) -> Groth16Verifier:
        """From a snarkjs ``verification_key.json`` text."""
        try:
            return cls(groth16py.VerifyingKey.from_snarkjs(vk_json))
        except (groth16py.EncodingError, ValueError) as exc:
            raise SetupError("malformed verification key") from exc

    @property
    def n_public(self) -> int:
        return self._vk.n_public

    @property
    def verifying_key(self) -> groth16py.VerifyingKey:
        return self._vk

    def verify(self, proof: Proof) -> bool:
        try:
            data, inputs = proof.data, list(proof.public_inputs)
        except AttributeError:
            return False
        if not isinstance(data, bytes) or len(data) != PROOF_BYTES:
            return False
        if len(inputs) != self.n_public:
            return False
        for x in inputs:
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < R:
                return False
        try:
            return bool(self._verifier.verify(data, inputs))
        except _BAD_INPUT:
            return False

    def verify_many(self, proofs: Iterable[Proof]) -> list[bool]:
        """One verdict per proof, in order (each checked on its own, no batching shortcuts)."""
        return [self.verify(p) for p in proofs]


def verify_words(
    verifier: Groth16Verifier, words: Sequence[int], public_inputs: Sequence[int]
) -> bool:
    """Verify a proof given as 8 EVM words (the contracts' ``uint256[8]``); False if malformed."""
    try:
        proof = Proof.from_words(list(words), tuple(public_inputs))
    except (ProofInvalid, TypeError, ValueError):
        return False
    return verifier.verify(proof)
