"""Value types of the toolkit: proofs and verification keys as they cross module boundaries."""

from __future__ import annotations

from dataclasses import dataclass

from zk.exceptions import ProofInvalid
from zk.field import P

PROOF_BYTES = 256


@dataclass(frozen=True)
class Proof:
    """A Groth16 proof in EVM order: A (x, y), B ((x1, x0), (y1, y0)), C (x, y), 8 words.

    This is groth16py's 256-byte encoding and the ``uint256[8]`` our Solidity verifiers
    take. ``public_inputs`` are in the circuit spec's order.
    """

    data: bytes
    public_inputs: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.data) != PROOF_BYTES:
            raise ProofInvalid(f"a proof is {PROOF_BYTES} bytes, got {len(self.data)}")

    @property
    def words(self) -> tuple[int, ...]:
        return tuple(int.from_bytes(self.data[i : i + 32], "big") for i in range(0, 256, 32))

    @classmethod
    def from_words(cls, words: list[int] | tuple[int, ...], public_inputs: tuple[int, ...]):
        if len(words) != 8:
            raise ProofInvalid("a proof is 8 words")
        for w in words:
            if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < P:
                raise ProofInvalid("proof coordinates must be integers below the base field")
        return cls(b"".join(w.to_bytes(32, "big") for w in words), tuple(public_inputs))

    def to_json(self) -> dict[str, object]:
        return {
            "proof": ["0x" + w.to_bytes(32, "big").hex() for w in self.words],
            "public_inputs": [str(x) for x in self.public_inputs],
        }
