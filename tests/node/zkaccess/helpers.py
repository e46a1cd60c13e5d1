"""Shared steps of the anonymous-read tests: a consortium policy (voted), a clinician in the
hospital's directory with an issued credential, and hand-built read requests (to replay,
tamper with, or claim a class the patient never consented to)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import groth16py
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from node.client import EmrClient
from node.zkaccess.clinician import ClinicianProver, credential_proof
from node.zkaccess.sealed_box import public_key_bytes
from zk.credentials import Identity, IssuedCredential, clinician_access_inputs, role_index
from zk.exceptions import WitnessError
from zk.models import Proof
from zk.prover import Groth16Prover, validate_inputs

YEAR = 365 * 24 * 3600


def allow(hospital: EmrClient, category: str, roles: list[str]) -> None:
    """The consortium's policy for ``category`` (a one-member consortium: the proposal
    executes with the proposer's vote)."""
    out = hospital.zk.propose_policy(category, roles)
    assert out["proposal"]["executed"], out


def issue(
    hospital: EmrClient, role: str, *, licence_expiry: int | None = None
) -> tuple[IssuedCredential, dict[str, Any]]:
    """A new clinician of ``role`` in the directory, with a fresh identity and the
    credential the node issued for it (and the node's answer)."""
    clinician = Account.create().address
    expiry = licence_expiry or int(time.time()) + YEAR
    hospital.add_clinician(clinician, role, licence_expiry=expiry)
    identity = Identity.generate()
    answer = hospital.zk.issue_credentials([(identity.commitment, clinician)])
    entry = answer["credentials"][0]
    issued = IssuedCredential(
        identity, entry["hospital_id"], role_index(entry["role"]), entry["licence_expiry"]
    )
    assert str(issued.leaf) == entry["leaf"]
    return issued, entry


def prover(credential: IssuedCredential, keys: Path) -> ClinicianProver:
    return ClinicianProver(credential, keys)


def forged_request(
    client: EmrClient,
    clinician: ClinicianProver,
    record_id: str,
    *,
    scope_kind: int,
    class_hospital: int,
    class_roles: int,
    mask: int,
    check: bool = True,
    signal: bytes | None = None,
) -> tuple[dict[str, Any], X25519PrivateKey]:
    """A read request for a reader class of the caller's choosing (not one the node listed):
    what an attacker would send. ``check=False`` proves even a statement the circuit
    rejects (the proof then does not verify)."""
    p = clinician.prover(client)
    info = clinician.info(client)
    issued = clinician.credential
    proof = credential_proof(client.zk.tree(), issued.leaf)
    access = client.zk.record_access(record_id)
    key = X25519PrivateKey.generate()
    signal = public_key_bytes(key) if signal is None else signal
    now = int(time.time())
    inputs = clinician_access_inputs(
        issued.identity,
        issued,
        proof,
        proof.root,
        now,
        mask,
        class_hospital,
        signal,
        int(info["chain_id"]),
        info["zk_access_gate"],
        bytes.fromhex(record_id[2:]),
        access["patient"],
        bytes.fromhex(access["category_hash"][2:]),
        int(info["epoch_length"]),
        check=check,
    )
    words = p.prove(inputs).words if check else unchecked_proof(p, inputs)
    body = {
        "root": str(inputs["root"]),
        "current_time": now,
        "signal": "0x" + signal.hex(),
        "epoch_nullifier": str(inputs["epochNullifier"]),
        "scope_kind": scope_kind,
        "class_hospital": class_hospital,
        "class_roles": class_roles,
        "proof": [str(w) for w in words],
    }
    return body, key


def unchecked_proof(p: Groth16Prover, inputs: dict[str, Any]) -> tuple[int, ...]:
    """A Groth16 proof of inputs the circuit rejects (groth16py returns one that does not
    verify rather than raising): what a cheating prover can send. Raises ``WitnessError``
    if witness generation itself refuses."""
    checked = validate_inputs(p.spec, inputs)
    public = tuple(checked[n] for n in p.spec.public_inputs)
    try:
        data = groth16py.prove(p.keys.proving_key, checked)
    except groth16py.WitnessError as exc:
        raise WitnessError("witness generation refused the statement") from exc
    return Proof(bytes(data), public).words  # type: ignore[arg-type]
