"""Interfaces of the zero-knowledge toolkit (one per component, as py-evm's ``eth/abc.py``).

The node and the flows import these; ``zk.prover`` / ``zk.verifier`` implement them over
groth16py and ``zk.reference`` over py_ecc.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from zk.models import Proof


class VerifierAPI(ABC):
    """Checks Groth16 proofs of one circuit (one verification key)."""

    @property
    @abstractmethod
    def n_public(self) -> int:
        """Number of public inputs the circuit has."""

    @abstractmethod
    def verify(self, proof: Proof) -> bool:
        """True iff ``proof`` verifies for ``proof.public_inputs``.

        Malformed input (wrong number of public inputs, elements >= r, points off the curve)
        returns False: a verifier never raises on attacker-controlled bytes.
        """


class ProverAPI(ABC):
    """Produces proofs for one circuit."""

    @property
    @abstractmethod
    def circuit(self) -> str:
        """Registered name of the circuit."""

    @abstractmethod
    def prove(self, inputs: Mapping[str, Any]) -> Proof:
        """Prove with ``inputs`` (every signal, public and private, by name).

        The returned proof has been verified. Raises ``WitnessError`` when the inputs do not
        satisfy the circuit, ``InputError`` when they are malformed.
        """

    @abstractmethod
    def public_inputs(self, inputs: Mapping[str, Any]) -> Sequence[int]:
        """The public inputs, in spec order, that a proof of ``inputs`` carries."""
