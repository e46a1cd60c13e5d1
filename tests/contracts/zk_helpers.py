"""Helpers for the ZK contract tests: deploying the ZK contracts on the session chain,
decoding their custom errors, a tiny 4-input test circuit and ClinicianAccess credentials.

Pairing checks in py-evm cost ~0.6 s each: tests send explicit gas (no estimation, which
would re-run the verifier) and keep proof-verifying calls few.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import groth16py
import pytest
from contract_helpers import ERRORS, Chain, revert_data
from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3.contract import Contract

from node.chain.artifacts import load_artifact
from node.chain.zk_deploy import ZkDeployment, deploy_zk_contracts
from zk.field import hash_to_field
from zk.merkle import CredentialTree
from zk.poseidon import poseidon

ZK_CONTRACTS = ("CredentialRegistry", "ZkAccessGate", "ClinicianAccessVerifier")
TX_GAS = 5_000_000
ROLES_NURSE = 1 << 1  # role index 1 (nurse)
ROLES_PHYSICIAN = 1 << 0

# A 4-public-input circuit (the AgeAtLeastVerifier shape): quick to set up and prove.
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


@dataclass(frozen=True)
class Credential:
    secret: int
    hospital: str
    role: int
    licence_expiry: int

    @property
    def commitment(self) -> int:
        return poseidon([self.secret, int(self.hospital, 16), self.role, self.licence_expiry])


def credential(label: str, hospital: str, role: int, expiry: int = 4_100_000_000) -> Credential:
    secret = int.from_bytes(keccak(text=label), "big") % (2**250) + 1
    return Credential(secret, hospital, role, expiry)


def access_inputs(
    cred: Credential,
    tree: CredentialTree,
    *,
    record_id: bytes,
    signal: bytes,
    allowed_roles: int,
    current_time: int,
) -> dict[str, Any]:
    path = tree.path(tree.index_of(cred.commitment))
    ext = hash_to_field(record_id + signal)
    return {
        "root": tree.root,
        "allowedRoles": allowed_roles,
        "currentTime": current_time,
        "externalNullifier": ext,
        "nullifierHash": poseidon([ext, cred.secret]),
        "signalHash": hash_to_field(signal),
        "secret": cred.secret,
        "hospitalId": int(cred.hospital, 16),
        "role": cred.role,
        "licenceExpiry": cred.licence_expiry,
        "pathElements": list(path.siblings),
        "pathIndices": list(path.indices),
    }


def request_tuple(
    inputs: dict[str, Any], record_id: bytes, category: bytes, signal: bytes
) -> tuple[Any, ...]:
    """IZkAccessGate.AccessRequest for a proof made with ``inputs``."""
    return (
        record_id,
        category,
        inputs["root"],
        inputs["currentTime"],
        signal,
        inputs["nullifierHash"],
    )


# ---------------------------------------------------------------- deployment


@dataclass
class Zk:
    deployment: ZkDeployment
    registry: Contract
    gate: Contract
    verifier: Contract


def deploy_zk(chain: Chain, vk_json: str, **kwargs: Any) -> Zk:
    dep = deploy_zk_contracts(chain.w3, chain.deployment.consortium, vk_json, **kwargs)
    return Zk(
        deployment=dep,
        registry=chain.contract("CredentialRegistry", dep.credential_registry),
        gate=chain.contract("ZkAccessGate", dep.zk_access_gate),
        verifier=chain.contract("ClinicianAccessVerifier", dep.clinician_verifier),
    )
