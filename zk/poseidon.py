"""circomlib's Poseidon hash over BN254 (1..16 inputs), bit-for-bit equal to the circuit.

The constants come from circomlib's ``poseidon_constants.circom`` (the copy vendored in
groth16py, else node_modules), parsed on first use per width: a single source of truth shared
with the circuits, rather than 2 MB of pasted tables. The round structure is circomlib's
optimised one (``PoseidonEx`` / circomlibjs ``poseidon_opt``): full rounds with M, one mix
with the pre-sparse matrix P, partial rounds with the sparse matrices S, full rounds again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

from zk.exceptions import InputError, SetupError
from zk.field import R, require_field_element

MAX_INPUTS = 16
N_ROUNDS_F = 8
N_ROUNDS_P = (56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68)

_CONSTANTS_FILE = "poseidon_constants.circom"
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_BRANCH = re.compile(r"if\s*\(\s*t\s*==\s*(\d+)\s*\)")


def _constants_path() -> Path:
    candidates: list[Path] = []
    try:
        import groth16py

        candidates.append(Path(groth16py.circomlib_path(2)) / _CONSTANTS_FILE)
    except (ImportError, ValueError):  # pragma: no cover - groth16py is a hard dependency
        pass
    candidates.append(
        Path(__file__).resolve().parents[1] / "node_modules/circomlib/circuits" / _CONSTANTS_FILE
    )
    for path in candidates:
        if path.is_file():
            return path
    raise SetupError("circomlib poseidon_constants.circom not found")


@functools.cache
def _source() -> str:
    return _constants_path().read_text()


@functools.cache
def _function_branches(name: str) -> dict[int, str]:
    """The text of each ``if (t==N)`` branch of circom function ``name``, keyed by N."""
    text = _source()
    start = text.find(f"function {name}(t)")
    if start < 0:
        raise SetupError(f"{name} missing from {_CONSTANTS_FILE}")
    end = text.find("\nfunction ", start + 1)
    body = text[start : end if end > 0 else len(text)]
    matches = list(_BRANCH.finditer(body))
    branches: dict[int, str] = {}
    for i, m in enumerate(matches):
        stop = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        branches[int(m.group(1))] = body[m.end() : stop]
    return branches


def _numbers(name: str, t: int) -> list[int]:
    try:
        branch = _function_branches(name)[t]
    except KeyError:
        raise SetupError(f"{name} has no constants for t={t}") from None
    return [int(h, 16) for h in _HEX.findall(branch)]


def _matrix(name: str, t: int) -> tuple[tuple[int, ...], ...]:
    flat = _numbers(name, t)
    if len(flat) != t * t:
        raise SetupError(f"{name}({t}) has {len(flat)} entries, expected {t * t}")
    return tuple(tuple(flat[i * t : (i + 1) * t]) for i in range(t))


@functools.cache
def _params(t: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple, tuple, int]:
    """(C, S, M^T, P^T, partial rounds) for state width t; matrices transposed so that
    ``new[i] = sum(MT[i][j] * state[j])`` matches circomlib's ``M[j][i]`` indexing."""
    n_p = N_ROUNDS_P[t - 2]
    c = tuple(_numbers("POSEIDON_C", t))
    s = tuple(_numbers("POSEIDON_S", t))
    if len(c) != t * N_ROUNDS_F + n_p or len(s) != n_p * (2 * t - 1):
        raise SetupError(f"poseidon constants for t={t} have the wrong length")
    m = _matrix("POSEIDON_M", t)
    p = _matrix("POSEIDON_P", t)
    mt = tuple(tuple(m[j][i] for j in range(t)) for i in range(t))
    pt = tuple(tuple(p[j][i] for j in range(t)) for i in range(t))
    return c, s, mt, pt, n_p


def _mix(state: list[int], mt: tuple[tuple[int, ...], ...]) -> list[int]:
    return [sum(a * b for a, b in zip(row, state, strict=True)) % R for row in mt]


def _permute(state: list[int]) -> list[int]:
    t = len(state)
    c, s, mt, pt, n_p = _params(t)
    half = N_ROUNDS_F // 2

    state = [(x + c[i]) % R for i, x in enumerate(state)]
    for r in range(half - 1):
        state = [(pow(x, 5, R) + c[(r + 1) * t + i]) for i, x in enumerate(state)]
        state = _mix(state, mt)
    state = [(pow(x, 5, R) + c[half * t + i]) for i, x in enumerate(state)]
    state = _mix(state, pt)

    base_c = (half + 1) * t
    width = 2 * t - 1
    for r in range(n_p):
        # Partial round: S-box on state[0] only, then the sparse matrix (row 0 dense,
        # the rest "state[k] += state[0] * s_k"); new state[0] uses the old state[1:].
        s0 = (pow(state[0], 5, R) + c[base_c + r]) % R
        row = s[width * r : width * (r + 1)]
        new0 = s0 * row[0]
        for k in range(1, t):
            new0 += row[k] * state[k]
            state[k] = (state[k] + s0 * row[t + k - 1]) % R
        state[0] = new0 % R

    base_c += n_p
    for r in range(half - 1):
        state = [(pow(x, 5, R) + c[base_c + r * t + i]) for i, x in enumerate(state)]
        state = _mix(state, mt)
    state = [pow(x, 5, R) for x in state]
    return _mix(state, mt)


def _check(values: Sequence[int]) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InputError("poseidon takes a sequence of integers")
    if not 1 <= len(values) <= MAX_INPUTS:
        raise InputError(f"poseidon takes 1..{MAX_INPUTS} inputs, got {len(values)}")
    return [require_field_element(v, f"poseidon input {i}") for i, v in enumerate(values)]


def poseidon_generic(values: Sequence[int]) -> int:
    """Poseidon in pure Python (any arity 1..16); ``poseidon`` is the public entry point."""
    inputs = _check(values)
    return _permute([0, *inputs])[0]


def _poseidon2_native(a: int, b: int) -> int:
    import light_poseidon_python

    return int(light_poseidon_python.poseidon_hash([a, b]))


def poseidon(values: Sequence[int]) -> int:
    """circomlib ``Poseidon(len(values))`` of field elements; 2 inputs use the Rust backend."""
    inputs = _check(values)
    if len(inputs) == 2:
        return _poseidon2_native(inputs[0], inputs[1])
    return _permute([0, *inputs])[0]


def poseidon2(left: int, right: int) -> int:
    """Poseidon of a pair (Merkle nodes, nullifiers)."""
    return poseidon((left, right))
