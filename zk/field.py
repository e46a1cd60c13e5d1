"""BN254 constants and field-element checks shared by the prover, verifiers and contracts."""

from __future__ import annotations

from collections.abc import Iterable

from eth_utils import keccak

from zk.exceptions import InputError

# Scalar field (circuit signals, public inputs) and base field (curve coordinates).
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
P = 21888242871839275222246405745257275088696311157297823662689037894645226208583


def require_field_element(value: int, what: str = "value") -> int:
    """Return ``value`` if it is an int in [0, R), else raise ``InputError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be an integer")
    if not 0 <= value < R:
        raise InputError(f"{what} is not a BN254 scalar field element")
    return value


def require_field_elements(values: Iterable[int], what: str = "public input") -> tuple[int, ...]:
    return tuple(require_field_element(v, f"{what} {i}") for i, v in enumerate(values))


def hash_to_field(data: bytes) -> int:
    """keccak256(data) >> 8: a field element any EVM contract can recompute cheaply
    (Semaphore's convention; 248 bits < R)."""
    return int.from_bytes(keccak(data), "big") >> 8
