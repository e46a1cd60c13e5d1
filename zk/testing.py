"""pytest support for circuits: assertions, session-cached keys and hypothesis strategies.

Use from a conftest (``pytest_plugins`` must sit in the root conftest, so tests/zk/conftest.py
imports the fixtures instead)::

    from zk.testing import prover, zk_artifacts_dir, zk_keys, zk_prover  # noqa: F401

    def test_x(zk_prover):
        proof = assert_proves(zk_prover("clinician_access"), inputs)
        assert_public_inputs_bound(zk_prover("clinician_access"), proof)

``access_scenario(role, mask, ...)`` builds one v2 anonymous read: an issued credential among
other leaves of a LeanIMT, a reader class (mask, hospital), time, signal, chain id, gate and
record; ``scenario.inputs(**overrides)`` gives the ClinicianAccess inputs (tampered at will).
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
from zk.credentials import (
    DEFAULT_EPOCH_LENGTH,
    MAX_HOSPITAL_ID,
    MAX_TIME,
    NROLES,
    Identity,
    IssuedCredential,
    access_scope,
    age_inputs,
    clinician_access_inputs,
    epoch_of,
    role_index,
)
from zk.exceptions import WitnessError, ZKError
from zk.field import R
from zk.merkle import LeanIMT, LeanIMTProof
from zk.models import Proof
from zk.prover import Groth16Prover
from zk.registry import CircuitSpec, get_circuit
from zk.setup import dev_setup

# A fixed "now" (2025-06-15) so tests do not depend on the wall clock.
NOW = 1_750_000_000
HOSPITAL = 7  # a Consortium member id
CHAIN_ID = 31337
GATE = "0x" + "6a" * 20
RECORD_ID = bytes(range(32))
PATIENT = "0x" + "5a" * 20
CATEGORY = bytes.fromhex("c4" * 32)
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
    """An issued credential in a LeanIMT with other leaves, and the request context of one
    anonymous read (class, time, signal, chain, gate, record, patient, category)."""

    identity: Identity
    issued: IssuedCredential
    tree: LeanIMT
    index: int
    mask: int
    class_hospital: int = 0
    current_time: int = NOW
    signal: bytes = SIGNAL
    chain_id: int = CHAIN_ID
    gate: str = GATE
    record_id: bytes = RECORD_ID
    patient: str = PATIENT
    category: bytes = CATEGORY
    epoch_length: int = DEFAULT_EPOCH_LENGTH

    @property
    def proof(self) -> LeanIMTProof:
        return self.tree.generate_proof(self.index)

    @property
    def scope(self) -> int:
        epoch = epoch_of(self.current_time, self.epoch_length)
        return access_scope(
            self.chain_id, self.gate, self.record_id, self.patient, self.category, epoch
        )

    def inputs(self, **overrides: Any) -> dict[str, Any]:
        """Valid inputs, with ``overrides`` replacing signals (no consistency checks)."""
        base = clinician_access_inputs(
            self.identity,
            self.issued,
            self.proof,
            self.tree.root,
            self.current_time,
            self.mask,
            self.class_hospital,
            self.signal,
            self.chain_id,
            self.gate,
            self.record_id,
            self.patient,
            self.category,
            self.epoch_length,
            check=False,
        )
        return {**base, **overrides}


def access_scenario(
    role: str | int = "nurse",
    mask: int | None = None,
    *,
    licence_expiry: int = NOW + 365 * 86400,
    hospital_id: int = HOSPITAL,
    class_hospital: int = 0,
    others: int = 2,
    position: int | None = None,
    secret: int | None = None,
) -> AccessScenario:
    """A valid scenario: ``others`` unrelated leaves, the credential at ``position`` (default
    last), the mask defaulting to the credential's role only."""
    identity = Identity.generate() if secret is None else Identity(secret)
    issued = IssuedCredential(identity, hospital_id, role_index(role), licence_expiry)
    position = others if position is None else position
    filler = [1 + secrets.randbelow(R - 1) for _ in range(others)]
    tree = LeanIMT([*filler[:position], issued.leaf, *filler[position:]])
    mask = (1 << issued.role) if mask is None else mask
    return AccessScenario(identity, issued, tree, position, mask, class_hospital)


@st.composite
def access_scenarios(draw: Callable[..., Any], max_others: int = 4) -> AccessScenario:
    """Random valid ClinicianAccess scenarios: role, extra mask bits, hospital and class,
    expiry, secret, current time, tree size and position, signal, chain, gate, record."""
    role = draw(st.integers(0, NROLES - 1))
    mask = (1 << role) | draw(st.integers(0, (1 << NROLES) - 1))
    now = draw(st.integers(0, MAX_TIME - 2))
    expiry = draw(st.integers(now + 1, MAX_TIME - 1))
    hospital = draw(st.integers(1, MAX_HOSPITAL_ID))
    others = draw(st.integers(0, max_others))
    scenario = access_scenario(
        role,
        mask,
        licence_expiry=expiry,
        hospital_id=hospital,
        class_hospital=draw(st.sampled_from([0, hospital])),
        others=others,
        position=draw(st.integers(0, others)),
        secret=draw(st.integers(1, R - 1)),
    )
    scenario.current_time = now
    scenario.signal = draw(st.binary(min_size=32, max_size=32))
    scenario.record_id = draw(st.binary(min_size=32, max_size=32))
    scenario.chain_id = draw(st.integers(1, 2**64))
    scenario.gate = "0x" + draw(st.binary(min_size=20, max_size=20)).hex()
    scenario.epoch_length = draw(st.integers(1, 7 * 86400))
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
