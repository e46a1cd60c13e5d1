"""Helpers for the ZK contract tests (v2): deploying the ZK contracts on the session chain,
decoding their custom errors, a tiny 4-input test circuit, issuing credentials with a
LeanIMT mirror, reader-class consents and ClinicianAccess proofs.

Pairing checks in py-evm cost ~0.6 s each: tests send explicit gas (no estimation, which
would re-run the verifier) and keep proof-verifying calls few.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import groth16py
import pytest
from contract_helpers import ERRORS, Chain, domain_of, revert_data
from eth_abi import decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3.contract import Contract
from web3.logs import DISCARD

from node.chain.artifacts import load_artifact
from node.chain.zk_deploy import ZkDeployment, deploy_zk_contracts
from zk.credentials import (
    Identity,
    IssuedCredential,
    clinician_access_inputs,
)
from zk.merkle import LeanIMT

ZK_CONTRACTS = ("CredentialRegistry", "ZkAccessGate", "ClinicianAccessVerifier", "PoseidonT3")
TX_GAS = 5_000_000
PHYSICIAN, NURSE = 0, 1
ROLES_PHYSICIAN = 1 << PHYSICIAN
ROLES_NURSE = 1 << NURSE
ANY_HOSPITAL = 0
SCOPE_RECORD, SCOPE_CATEGORY, SCOPE_ALL = 0, 1, 2
ZERO32 = b"\x00" * 32
LICENCE = 4_100_000_000  # a licence expiry far in the future (uint40)

# zk-kit's file-level errors (InternalLeanIMT), which have no contract prefix
_LEAN_IMT_ERRORS = (
    "WrongSiblingNodes()",
    "LeafGreaterThanSnarkScalarField()",
    "LeafCannotBeZero()",
    "LeafAlreadyExists()",
    "LeafDoesNotExist()",
)

# A 4-public-input circuit (the verifier shape): quick to set up and prove.
TOY_CIRCUIT = """pragma circom 2.0.0;
template Toy() {
  signal input a; signal input b; signal input c; signal input d;
  signal input x; signal input y;
  signal z; z <== x * y;
  signal s1; s1 <== a * b;
  signal s2; s2 <== c * d + s1;
  signal t; t <== s2 * z;
}
component main {public [a, b, c, d]} = Toy();
"""


def _zk_errors() -> dict[bytes, tuple[str, list[str]]]:
    table = dict(ERRORS)
    for name in ZK_CONTRACTS:
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                types = [i["type"] for i in item["inputs"]]
                sig = f"{item['name']}({','.join(types)})"
                table[function_signature_to_4byte_selector(sig)] = (item["name"], types)
    for sig in _LEAN_IMT_ERRORS:
        table[function_signature_to_4byte_selector(sig)] = (sig.split("(")[0], [])
    return table


ZK_ERRORS = _zk_errors()


def expect_zk_revert(action: Any, name: str) -> tuple[Any, ...]:
    """Run ``action`` (a call or transact), assert it reverts with custom error ``name``."""
    with pytest.raises(Exception) as info:
        action()
    data = revert_data(info.value)
    assert data is not None, f"no revert data in {info.value!r}"
    got, types = ZK_ERRORS[data[:4]]
    values = decode(types, data[4:])
    args = tuple(
        to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
    )
    assert got == name, f"expected {name}, got {got}{args}"
    return args


def send(chain: Chain, fn: Any, sender: str) -> Any:
    """Transact with explicit gas (no estimation) and return the successful receipt."""
    tx_hash = fn.transact({"from": sender, "gas": TX_GAS})
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return receipt


def words(proof: bytes) -> list[int]:
    return [int.from_bytes(proof[i : i + 32], "big") for i in range(0, 256, 32)]


# ---------------------------------------------------------------- toy circuit


@dataclass(frozen=True)
class Toy:
    pk: groth16py.ProvingKey
    vk: groth16py.VerifyingKey

    def prove(self, public: list[int], x: int = 5, y: int = 6) -> list[int]:
        a, b, c, d = public
        return words(groth16py.prove(self.pk, {"a": a, "b": b, "c": c, "d": d, "x": x, "y": y}))


@functools.cache
def toy() -> Toy:
    folder = Path(tempfile.mkdtemp(prefix="toy-circuit-"))
    source = folder / "toy.circom"
    source.write_text(TOY_CIRCUIT)
    pk, vk = groth16py.setup_circom(str(source))
    return Toy(pk, vk)


# ---------------------------------------------------------------- ClinicianAccess


@functools.cache
def clinician_prover() -> Any:
    from zk.prover import Groth16Prover
    from zk.registry import get_circuit
    from zk.setup import dev_setup

    keys = dev_setup(get_circuit("clinician_access"), tempfile.mkdtemp(prefix="zk-keys-"))
    return Groth16Prover(keys)


def identity(label: str) -> Identity:
    """A deterministic clinician identity."""
    from zk.field import R

    return Identity(int.from_bytes(keccak(text=label), "big") % (R - 1) + 1)


# ---------------------------------------------------------------- deployment


@dataclass
class Zk:
    deployment: ZkDeployment
    registry: Contract
    gate: Contract
    verifier: Contract
    tree: LeanIMT = field(default_factory=LeanIMT)


def deploy_zk(chain: Chain, vk_json: str | None = None, **kwargs: Any) -> Zk:
    vk = clinician_prover().keys.verification_key_json if vk_json is None else vk_json
    dep = deploy_zk_contracts(
        chain.w3, chain.deployment.consortium, chain.deployment.consent_registry, vk, **kwargs
    )
    return Zk(
        deployment=dep,
        registry=chain.contract("CredentialRegistry", dep.credential_registry),
        gate=chain.contract("ZkAccessGate", dep.zk_access_gate),
        verifier=chain.contract("ClinicianAccessVerifier", dep.clinician_verifier),
    )


def issue(
    chain: Chain, zk: Zk, who: Identity, issuer: str, role: int, expiry: int = LICENCE
) -> IssuedCredential:
    """Issue one credential from member ``issuer``; mirror it in ``zk.tree``; check roots."""
    hospital_id = chain.consortium.functions.memberId(issuer).call()
    fn = zk.registry.functions.issueCredential(who.commitment, role, expiry)
    fn.call({"from": issuer})  # surfaces a revert with its data
    send(chain, fn, issuer)
    issued = IssuedCredential(who, hospital_id, role, expiry)
    zk.tree.insert(issued.leaf)
    assert zk.registry.functions.root().call() == zk.tree.root
    return issued


def revoke(chain: Chain, zk: Zk, issued: IssuedCredential, sender: str) -> Any:
    """Revoke ``issued`` from ``sender`` with its current Merkle proof; mirror it."""
    index = zk.tree.index_of(issued.leaf)
    proof = zk.tree.generate_proof(index)
    fn = zk.registry.functions.revokeCredential(
        issued.identity.commitment,
        issued.hospital_id,
        issued.role,
        issued.licence_expiry,
        list(proof.siblings),
    )
    fn.call({"from": sender})  # surfaces a revert with its data
    receipt = send(chain, fn, sender)
    zk.tree.remove(index)
    assert zk.registry.functions.root().call() == zk.tree.root
    return receipt


def revoke_call_data(zk: Zk, issued: IssuedCredential) -> bytes:
    """Calldata of revokeCredential(issued) with its current Merkle proof (for a vote)."""
    proof = zk.tree.generate_proof(zk.tree.index_of(issued.leaf))
    data = zk.registry.encode_abi(
        "revokeCredential",
        args=[
            issued.identity.commitment,
            issued.hospital_id,
            issued.role,
            issued.licence_expiry,
            list(proof.siblings),
        ],
    )
    return bytes.fromhex(data[2:])


def pass_call(chain: Chain, target: str, data: bytes, voters: list[str]) -> Any:
    """A Consortium call proposal by ``voters[0]`` voted by the others; the last receipt."""
    c = chain.consortium
    receipt = chain.send(c.functions.proposeCall(target, data, "test"), voters[0])
    (created,) = c.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    for voter in voters[1:]:
        receipt = send(chain, c.functions.vote(created["args"]["id"]), voter)
    return receipt


def set_policy(chain: Chain, gate: Any, category: bytes, roles: int) -> None:
    """Set a category policy of ``gate`` through a Consortium vote (a + b of the three
    founders)."""
    data = bytes.fromhex(gate.encode_abi("setCategoryPolicy", args=[category, roles])[2:])
    pass_call(chain, gate.address, data, [chain.a, chain.b])
    assert gate.functions.categoryPolicy(category).call() == roles


# ---------------------------------------------------------------- reader-class consents

_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_CLASS_FIELDS = [
    {"name": "patient", "type": "address"},
    {"name": "hospital", "type": "uint32"},
    {"name": "roles", "type": "uint16"},
    {"name": "scopeKind", "type": "uint8"},
    {"name": "scope", "type": "bytes32"},
]
_GRANT_CLASS = [
    *_CLASS_FIELDS,
    {"name": "expiresAt", "type": "uint64"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
_REVOKE_CLASS = [
    *_CLASS_FIELDS,
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]


def _class_message(
    chain: Chain, patient: str, hospital: int, roles: int, kind: int, scope: bytes
) -> dict[str, Any]:
    now = chain.now()
    return {
        "patient": patient,
        "hospital": hospital,
        "roles": roles,
        "scopeKind": kind,
        "scope": scope,
        "nonce": chain.consent.functions.nonces(patient).call(),
        "deadline": now + 3600,
    }


def _sign(
    key: bytes, primary: str, types: list[dict[str, str]], msg: dict[str, Any], chain: Chain
) -> bytes:
    payload = {
        "types": {"EIP712Domain": _DOMAIN_TYPE, primary: types},
        "primaryType": primary,
        "domain": domain_of(chain.consent),
        "message": msg,
    }
    return bytes(Account.sign_typed_data(key, full_message=payload).signature)


def grant_class(
    chain: Chain,
    patient_key: bytes,
    hospital: int,
    roles: int,
    kind: int = SCOPE_ALL,
    scope: bytes = ZERO32,
    expires_in: int = 30 * 86400,
) -> None:
    """The patient signs a GrantClass; an outsider relays it."""
    patient = Account.from_key(patient_key).address
    msg = _class_message(chain, patient, hospital, roles, kind, scope)
    msg["expiresAt"] = chain.now() + expires_in
    sig = _sign(patient_key, "GrantClass", _GRANT_CLASS, msg, chain)
    fields = [f["name"] for f in _GRANT_CLASS]
    fn = chain.consent.functions.grantClassWithSig(tuple(msg[f] for f in fields), sig)
    chain.send(fn, chain.outsider)


def revoke_class(
    chain: Chain,
    patient_key: bytes,
    hospital: int,
    roles: int,
    kind: int = SCOPE_ALL,
    scope: bytes = ZERO32,
) -> Any:
    patient = Account.from_key(patient_key).address
    msg = _class_message(chain, patient, hospital, roles, kind, scope)
    sig = _sign(patient_key, "RevokeClass", _REVOKE_CLASS, msg, chain)
    fields = [f["name"] for f in _REVOKE_CLASS]
    fn = chain.consent.functions.revokeClassWithSig(tuple(msg[f] for f in fields), sig)
    return chain.send(fn, chain.outsider)


# ---------------------------------------------------------------- access requests


@dataclass
class Signed:
    """A proof with the AccessRequest that carries it and the circuit inputs."""

    request: tuple[Any, ...]
    proof: list[int]
    inputs: dict[str, Any]

    def with_(self, **changes: Any) -> tuple[Any, ...]:
        """The request with named fields replaced (AccessRequest field names)."""
        out = list(self.request)
        for name, value in changes.items():
            out[REQUEST_FIELDS.index(name)] = value
        return tuple(out)

    @property
    def record_id(self) -> bytes:
        return self.request[0]

    @property
    def signal(self) -> bytes:
        return self.request[8]


REQUEST_FIELDS = (
    "recordId",
    "patient",
    "category",
    "scopeKind",
    "classHospital",
    "classRoles",
    "root",
    "currentTime",
    "signal",
    "epochNullifier",
)


def make_request(
    chain: Chain,
    zk: Zk,
    issued: IssuedCredential,
    *,
    label: str,
    patient: str,
    category: bytes,
    class_roles: int,
    class_hospital: int = ANY_HOSPITAL,
    scope_kind: int = SCOPE_ALL,
    current_time: int | None = None,
    mask: int | None = None,
    gate: str | None = None,
    chain_id: int | None = None,
    record_id: bytes | None = None,
    prove: bool = True,
) -> Signed:
    """A ClinicianAccess proof for ``issued`` (its path built from the public tree) and the
    AccessRequest for it. ``mask`` defaults to ``class_roles & categoryPolicy(category)``;
    ``gate`` / ``chain_id`` default to the deployed gate and the chain's id."""
    record_id = keccak(text=f"record-{label}") if record_id is None else record_id
    signal = keccak(text=f"x25519-{label}")
    now = chain.now() if current_time is None else current_time
    if mask is None:
        mask = class_roles & zk.gate.functions.categoryPolicy(category).call()
    tree = zk.tree
    inputs = clinician_access_inputs(
        issued.identity,
        issued,
        tree.generate_proof(tree.index_of(issued.leaf)),
        tree.root,
        now,
        mask,
        class_hospital,
        signal,
        chain.w3.eth.chain_id if chain_id is None else chain_id,
        zk.gate.address if gate is None else gate,
        record_id,
        patient,
        category,
        zk.gate.functions.epochLength().call(),
        check=False,
    )
    request = (
        record_id,
        patient,
        category,
        scope_kind,
        class_hospital,
        class_roles,
        inputs["root"],
        now,
        signal,
        inputs["epochNullifier"],
    )
    proof = list(clinician_prover().prove(inputs).words) if prove else [0] * 8
    return Signed(request, proof, inputs)
