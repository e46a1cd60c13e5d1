"""The generated PoseidonT3 library (zk/export/poseidon_solidity.py) is circomlib Poseidon(2).

The credential tree and every leaf are hashed on-chain with it: a single wrong constant or
reduction would make every root disagree with the circuit's, so it is checked against
zk.poseidon (the prover's hash) on edge values and random field elements.
"""

from __future__ import annotations

import random

import pytest
from contract_helpers import Chain

from zk.export.poseidon_solidity import TARGET, source
from zk.field import R
from zk.poseidon import poseidon

EDGES = [0, 1, 2, R - 1, R - 2, (1 << 253) + 12345, 1 << 40, R // 2, R // 3]


@pytest.fixture(scope="module")
def poseidon_lib(_session_chain: Chain):
    return _session_chain.deploy("PoseidonT3")


def test_generated_source_is_current() -> None:
    assert TARGET.read_text() == source(), "run .venv/bin/python -m zk.export.poseidon_solidity"


def test_matches_zk_poseidon(poseidon_lib) -> None:
    rng = random.Random(9)
    pairs = [(a, b) for a in EDGES for b in EDGES]
    pairs += [(rng.randrange(R), rng.randrange(R)) for _ in range(150)]
    for a, b in pairs:
        assert poseidon_lib.functions.hash([a, b]).call() == poseidon([a, b]), (a, b)


def test_inputs_are_reduced_mod_r(poseidon_lib) -> None:
    # as poseidon-solidity: a word >= r hashes as its residue (the registry never passes one)
    for a, b in [(R, 5), (R + 7, 2**256 - 1), (2**256 - 1, 2**256 - 1)]:
        got = poseidon_lib.functions.hash([a, b]).call()
        assert got == poseidon([a % R, b % R])
