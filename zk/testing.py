"""pytest support for circuits: assertions, session-cached keys and hypothesis strategies.

Use from a conftest (``pytest_plugins`` must sit in the root conftest, so tests/zk/conftest.py
imports the fixtures instead)::

    from zk.testing import prover, zk_artifacts_dir, zk_keys, zk_prover  # noqa: F401

    def test_x(zk_prover):
        proof = assert_proves(zk_prover("clinician_access"), inputs)
        assert_public_inputs_bound(zk_prover("clinician_access"), proof)

Keys come from a dev setup into one session temporary directory, once per circuit.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import strategies as st

from zk.abc import ProverAPI, VerifierAPI
from zk.artifacts import KeyPair
from zk.credentials import NROLES, Credential, age_inputs, clinician_access_inputs
from zk.exceptions import WitnessError, ZKError
from zk.field import R
from zk.merkle import CredentialTree
from zk.models import Proof
from zk.prover import Groth16Prover
from zk.registry import CircuitSpec, get_circuit
from zk.setup import dev_setup

# A fixed "now" (2025-06-15) so tests do not depend on the wall clock.
NOW = 1_750_000_000
HOSPITAL = 0x00000000000000000000000000000000000A11CE
RECORD_ID = bytes(range(32))
SIGNAL = bytes(range(32, 64))

# -- assertions ------------------------------------------------------------------------------


def _verifier_of(target: VerifierAPI | Groth16Prover) -> VerifierAPI:
    return target.verifier if isinstance(target, Groth16Prover) else target


def assert_proves(prover: ProverAPI, inputs: Mapping[str, Any]) -> Proof:
    """Prove ``inputs``; fail the test if the circuit rejects them. Returns the proof, whose
    public inputs are checked to be the inputs' public signals in spec order."""
    try:
        proof = prover.prove(inputs)
    except ZKError as exc:
        pytest.fail(f"{prover.circuit}: expected a proof, got {type(exc).__name__}: {exc}")
    assert proof.public_inputs == tuple(prover.public_inputs(inputs))
    if isinstance(prover, Groth16Prover):
        assert prover.verifier.verify(proof), "the returned proof does not verify"
    return proof


def assert_rejects(prover: ProverAPI, inputs: Mapping[str, Any]) -> WitnessError:
    """The circuit rejects well-formed ``inputs``: the witness fails or the proof does not
    verify (the prover reports both as ``WitnessError``)."""
    with pytest.raises(WitnessError) as info:
        prover.prove(inputs)
    return info.value


def assert_public_inputs_bound(target: VerifierAPI | Groth16Prover, proof: Proof) -> None:
    """``proof`` verifies, and changing any single public input (by +1 and by -1 mod R) makes
    it fail: no public input is free (e.g. an unconstrained signalHash)."""
    verifier = _verifier_of(target)
    names = target.spec.public_inputs if isinstance(target, Groth16Prover) else None
    assert verifier.verify(proof), "the original proof does not verify"
    for i, value in enumerate(proof.public_inputs):
        label = names[i] if names else f"#{i}"
        for changed in ((value + 1) % R, (value - 1) % R):
            inputs = list(proof.public_inputs)
            inputs[i] = changed
            assert not verifier.verify(Proof(proof.data, tuple(inputs))), (
                f"public input {label} is not bound by the proof"
            )


# -- scenarios and hypothesis strategies -----------------------------------------------------


@dataclass
class AccessScenario:
    """A credential in a small tree, with everything else needed for ClinicianAccess."""

    credential: Credential
    tree: CredentialTree
    index: int
    allowed_roles: int
    current_time: int = NOW
    record_id: bytes = RECORD_ID
    signal: bytes = SIGNAL

    def inputs(self, **overrides: Any) -> dict[str, Any]:
        """Valid inputs, with ``overrides`` replacing signals (no consistency checks)."""
        base = clinician_access_inputs(
            self.credential,
            self.tree.path(self.index),
            self.tree.root,
            self.allowed_roles,
            self.current_time,
            self.record_id,
            self.signal,
            check=False,
        )
        return {**base, **overrides}


def access_scenario(
    role: str | int = "nurse",
    allowed_roles: int | None = None,
    *,
    licence_expiry: int = NOW + 365 * 86400,
    hospital_id: int = HOSPITAL,
    others: int = 2,
    position: int | None = None,
    secret: int | None = None,
) -> AccessScenario:
    """A valid scenario: ``others`` unrelated leaves, the credential at ``position``."""
    secret = 1 + secrets.randbelow(R - 1) if secret is None else secret
    cred = Credential(secret, hospital_id, role, licence_expiry)  # type: ignore[arg-type]
    tree = CredentialTree()
    position = others if position is None else position
    filler = [1 + secrets.randbelow(R - 1) for _ in range(others)]
    leaves = [*filler[:position], cred.commitment, *filler[position:]]
    tree.insert_many(leaves)
    mask = (1 << cred.role) if allowed_roles is None else allowed_roles
    return AccessScenario(cred, tree, position, mask)


@st.composite
def access_scenarios(draw: Callable[..., Any], max_others: int = 4) -> AccessScenario:
    """Random valid ClinicianAccess scenarios: role, extra allowed roles, hospital, expiry,
    secret, current time, tree position."""
    role = draw(st.integers(0, NROLES - 1))
    mask = (1 << role) | draw(st.integers(0, (1 << NROLES) - 1))
    now = draw(st.integers(0, 2**64 - 2))
    expiry = draw(st.integers(now + 1, 2**64 - 1))
    others = draw(st.integers(0, max_others))
    scenario = access_scenario(
        role,
        mask,
        licence_expiry=expiry,
        hospital_id=draw(st.integers(1, 2**160 - 1)),
        others=others,
        position=draw(st.integers(0, others)),
        secret=draw(st.integers(1, R - 1)),
    )
    scenario.current_time = now
    scenario.record_id = draw(st.binary(min_size=32, max_size=32))
    scenario.signal = draw(st.binary(min_size=32, max_size=32))
    return scenario


def yyyymmdd_dates(min_year: int = 1900, max_year: int = 2100) -> st.SearchStrategy[int]:
    from datetime import date

    return st.dates(date(min_year, 1, 1), date(max_year, 12, 31)).map(
        lambda d: d.year * 10000 + d.month * 100 + d.day
    )


@st.composite
def age_cases(draw: Callable[..., Any]) -> tuple[dict[str, int], bool]:
    """(AgeAtLeast inputs, whether the age rule holds), over random dates and ages."""
    dob = draw(yyyymmdd_dates(1900, 2020))
    today = draw(yyyymmdd_dates(1900, 2100))
    min_age = draw(st.integers(0, 120))
    salt = draw(st.integers(0, R - 1))
    inputs = age_inputs(dob, salt, today, min_age, SIGNAL, check=False)
    return inputs, dob + min_age * 10000 <= today


# -- fixtures --------------------------------------------------------------------------------

_PROVERS: dict[tuple[str, str], Groth16Prover] = {}


def _spec(circuit: str | CircuitSpec) -> CircuitSpec:
    return circuit if isinstance(circuit, CircuitSpec) else get_circuit(circuit)


@pytest.fixture(scope="session")
def zk_artifacts_dir(tmp_path_factory: pytest.TempPathFactory):
    """One artifacts directory for the whole session (keys set up once per circuit)."""
    return tmp_path_factory.mktemp("zk-artifacts")


@pytest.fixture(scope="session")
def zk_keys(zk_artifacts_dir) -> Callable[[str | CircuitSpec], KeyPair]:
    """``zk_keys(name_or_spec)`` -> dev ``KeyPair``, set up once per session."""

    def get(circuit: str | CircuitSpec) -> KeyPair:
        return dev_setup(_spec(circuit), zk_artifacts_dir)

    return get


@pytest.fixture(scope="session")
def zk_prover(zk_artifacts_dir, zk_keys) -> Callable[[str | CircuitSpec], Groth16Prover]:
    """``zk_prover(name_or_spec)`` -> ``Groth16Prover`` over session dev keys."""

    def get(circuit: str | CircuitSpec) -> Groth16Prover:
        spec = _spec(circuit)
        key = (str(zk_artifacts_dir), spec.circuit_hash)
        if key not in _PROVERS:
            _PROVERS[key] = Groth16Prover(zk_keys(spec))
        return _PROVERS[key]

    return get


@pytest.fixture(scope="session")
def prover(zk_prover) -> Callable[[str | CircuitSpec], Groth16Prover]:
    """Alias of ``zk_prover``."""
    return zk_prover
