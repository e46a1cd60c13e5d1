"""Groth16 proving over groth16py: validate inputs, witness + prove, then verify the proof.

groth16py does not raise when a circuit assertion fails: it returns a proof that does not
verify. So every proof is verified before it is returned, and a failing one becomes
``WitnessError`` - callers never hold an unverified proof.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import groth16py

from zk.abc import ProverAPI
from zk.artifacts import KeyPair
from zk.exceptions import InputError, WitnessError
from zk.field import R
from zk.models import Proof
from zk.registry import CircuitSpec
from zk.verifier import Groth16Verifier

UNSATISFIED = "inputs do not satisfy the circuit"


def _element(value: object, signal: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"signal {signal} must be an integer")
    if not 0 <= value < R:
        raise InputError(f"signal {signal} is not a BN254 scalar field element")
    return value


def validate_inputs(spec: CircuitSpec, inputs: Mapping[str, Any]) -> dict[str, int | list[int]]:
    """Every input signal of ``spec`` present, of the right shape, each value in [0, R).

    Errors name the signal, never its value (inputs are private).
    """
    if not isinstance(inputs, Mapping):
        raise InputError("circuit inputs must be a mapping of signal name to value")
    signals = spec.signals
    unknown = sorted(set(inputs) - set(signals), key=str)
    if unknown:
        raise InputError(f"{spec.name} has no input signal {unknown[0]!r}")
    out: dict[str, int | list[int]] = {}
    for name, length in signals.items():
        if name not in inputs:
            raise InputError(f"missing input signal {name} for {spec.name}")
        value = inputs[name]
        if length is None:
            out[name] = _element(value, name)
            continue
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise InputError(f"signal {name} must be a list of {length} integers")
        if len(value) != length:
            raise InputError(f"signal {name} must have {length} elements, got {len(value)}")
        out[name] = [_element(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return out


class Groth16Prover(ProverAPI):
    """Proves one circuit with its ``KeyPair`` (dev or ceremony)."""

    def __init__(self, keys: KeyPair) -> None:
        self._keys = keys
        self._spec = keys.spec
        self._verifier = Groth16Verifier(keys.verifying_key)

    @property
    def circuit(self) -> str:
        return self._spec.name

    @property
    def spec(self) -> CircuitSpec:
        return self._spec

    @property
    def keys(self) -> KeyPair:
        return self._keys

    @property
    def verifier(self) -> Groth16Verifier:
        return self._verifier

    def public_inputs(self, inputs: Mapping[str, Any]) -> tuple[int, ...]:
        checked = validate_inputs(self._spec, inputs)
        return tuple(checked[n] for n in self._spec.public_inputs)  # type: ignore[misc]

    def prove(self, inputs: Mapping[str, Any]) -> Proof:
        checked = validate_inputs(self._spec, inputs)
        public = tuple(checked[n] for n in self._spec.public_inputs)
        try:
            data = groth16py.prove(self._keys.proving_key, checked)
        except groth16py.WitnessError as exc:
            # groth16py's message may quote values; keep private inputs out of ours.
            raise WitnessError(f"witness generation failed for {self._spec.name}") from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise InputError(f"groth16py rejected the inputs of {self._spec.name}") from exc
        proof = Proof(bytes(data), public)  # type: ignore[arg-type]
        if not self._verifier.verify(proof):
            raise WitnessError(UNSATISFIED)
        return proof
