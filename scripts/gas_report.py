#!/usr/bin/env python3
"""Measure the gas of every state-changing contract function on an in-memory eth-tester
chain (py-evm) and write docs/gas.md.

Usage: .venv/bin/python scripts/gas_report.py [--output docs/gas.md]

The chain clock is pinned so calldata (deadlines, expiries) and therefore gas are
reproducible run to run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eth_abi import encode  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_tester import EthereumTester, PyEVMBackend  # noqa: E402
from eth_utils import keccak  # noqa: E402
from web3 import EthereumTesterProvider, Web3  # noqa: E402
from web3.contract import Contract  # noqa: E402

from node.chain.artifacts import load_artifact  # noqa: E402
from node.chain.deploy import deploy_contracts  # noqa: E402
from node.chain.zk_deploy import deploy_zk_contracts  # noqa: E402
from node.consent.typed_data import full_message  # noqa: E402

COMMAND = ".venv/bin/python scripts/gas_report.py"
START_TIME = 4_000_000_000  # pinned chain clock (reproducible calldata)
ZERO32 = b"\x00" * 32

Row = tuple[str, str, int, str]  # contract, operation, gas, note


class Bench:
    def __init__(self) -> None:
        self.tester = EthereumTester(PyEVMBackend())
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.accounts = [Web3.to_checksum_address(a) for a in self.w3.eth.accounts]
        self.w3.eth.default_account = self.accounts[0]
        self.tester.time_travel(START_TIME)
        self.rows: list[Row] = []
        self.zk_rows: list[Row] = []

    def gas(self, tx_hash: Any) -> int:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise RuntimeError("transaction reverted")
        return int(receipt["gasUsed"])

    def send(self, fn: Any, sender: str) -> int:
        return self.gas(fn.transact({"from": sender, "gas": 29_000_000}))

    def record(self, contract: str, op: str, gas: int, note: str = "") -> None:
        self.rows.append((contract, op, gas, note))

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=address, abi=load_artifact(name).abi)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


def _deployments(b: Bench) -> dict[str, Contract]:
    a = b.accounts
    founders = [(a[0], "Alpha Hospital"), (a[1], "Beta Clinic"), (a[2], "Gamma Medical Center")]
    dep = deploy_contracts(b.w3, founders)
    # deployment gas, read back from the creation receipts of the blocks just mined
    names = ["Consortium", "RecordRegistry", "ConsentRegistry", "AccessLog"]
    for offset, name in enumerate(names):
        block = b.w3.eth.get_block(dep.block_number + offset, full_transactions=False)
        gas = b.gas(block["transactions"][0])
        note = "3 founders" if name == "Consortium" else ""
        b.record(name, "deploy", gas, note)
    return {
        "Consortium": b.contract("Consortium", dep.consortium),
        "RecordRegistry": b.contract("RecordRegistry", dep.record_registry),
        "ConsentRegistry": b.contract("ConsentRegistry", dep.consent_registry),
        "AccessLog": b.contract("AccessLog", dep.access_log),
    }


def _consortium(b: Bench, c: Contract) -> None:
    a = b.accounts
    f = c.functions
    b.record("Consortium", "propose (Admit, pending)", b.send(f.propose(0, a[3], "Delta"), a[0]))
    b.record("Consortium", "vote (completes Admit)", b.send(f.vote(1), a[1]), "3 -> 4 members")
    b.record("Consortium", "propose (Admit, pending)", b.send(f.propose(0, a[4], "Eps"), a[0]))
    b.record("Consortium", "vote (no majority yet)", b.send(f.vote(2), a[1]), "2 of 4 votes")
    b.record("Consortium", "propose (Remove, pending)", b.send(f.propose(1, a[3], ""), a[2]))
    b.send(f.vote(3), a[0])
    b.record("Consortium", "vote (completes Remove)", b.send(f.vote(3), a[1]), "4 -> 3 members")
    b.record(
        "Consortium", "execute (majority after a removal)", b.send(f.execute(2), a[2]), "2 of 3"
    )


def _records(b: Bench, r: Contract) -> None:
    patients = [Account.from_key(keccak(text=f"patient-{i}")).address for i in range(50)]
    first = b.send(
        r.functions.anchorBatch(keccak(text="warm-up"), [ZERO32], [patients[0]]), b.accounts[0]
    )
    b.record(
        "RecordRegistry", "anchorBatch (first batch ever, 1 record)", first, "batch counter 0 -> 1"
    )
    for n in (1, 10, 100, 1000):
        ids = [keccak(text=f"record-{n}-{i}") for i in range(n)]
        pts = [patients[i % len(patients)] for i in range(n)]
        root = keccak(encode(["uint256"], [n]))
        gas = b.send(r.functions.anchorBatch(root, ids, pts), b.accounts[0])
        label = f"anchorBatch ({n} record{'s' if n != 1 else ''})"
        b.record("RecordRegistry", label, gas, f"{gas / n:,.0f} per record")
    for n in (1, 10, 100):
        ids = [keccak(text=f"record-{n}-{i}") for i in range(n)]
        gas = b.send(r.functions.eraseRecords(ids, keccak(text="reason")), b.accounts[0])
        label = f"eraseRecords ({n} tombstone{'s' if n != 1 else ''})"
        b.record("RecordRegistry", label, gas, f"{gas / n:,.0f} per record")


def _sign(key: bytes, primary: str, message: dict[str, Any], domain: dict[str, Any]) -> bytes:
    payload = full_message(primary, message, domain)
    return bytes(Account.sign_typed_data(key, full_message=payload).signature)


def _consent(b: Bench, cr: Contract) -> None:
    _fields, name, version, chain_id, verifying, _salt, _ext = cr.functions.eip712Domain().call()
    domain = {"name": name, "version": version, "chainId": chain_id, "verifyingContract": verifying}
    f = cr.functions
    relayer = b.accounts[0]
    patient = Account.from_key(keccak(text="patient-gas"))
    clinician = Account.from_key(keccak(text="clinician-gas")).address
    now = b.now()
    scopes = [
        (0, keccak(text="record-1"), "Record scope; the patient's first signature (nonce 0 -> 1)"),
        (1, keccak(text="radiology"), "Category scope"),
        (2, ZERO32, "All scope"),
    ]
    nonce = 0
    messages = []
    for kind, scope, note in scopes:
        g = {
            "patient": patient.address,
            "grantee": clinician,
            "scopeKind": kind,
            "scope": scope,
            "expiresAt": now + 30 * 86400,
            "nonce": nonce,
            "deadline": now + 3600,
        }
        sig = _sign(patient.key, "Grant", g, domain)
        gas = b.send(f.grantWithSig(tuple(g.values()), sig), relayer)
        b.record("ConsentRegistry", "grantWithSig (EOA patient)", gas, note)
        messages.append(g)
        nonce += 1
    g = messages[0]
    r = {k: v for k, v in g.items() if k != "expiresAt"} | {"nonce": nonce}
    gas = b.send(
        f.revokeWithSig(tuple(r.values()), _sign(patient.key, "Revoke", r, domain)), relayer
    )
    b.record("ConsentRegistry", "revokeWithSig (EOA patient)", gas, "clears a stored consent")
    nonce += 1

    # ERC-1271 wallet as the patient
    owner = Account.from_key(keccak(text="wallet-owner"))
    art = load_artifact("ERC1271WalletMock")
    factory = b.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt_hash = factory.constructor(owner.address).transact({"from": relayer})
    wallet = b.w3.eth.wait_for_transaction_receipt(receipt_hash)["contractAddress"]
    b.record("ERC1271WalletMock", "deploy", b.gas(receipt_hash), "tests only")
    g = dict(messages[2], patient=wallet, nonce=0)
    gas = b.send(f.grantWithSig(tuple(g.values()), _sign(owner.key, "Grant", g, domain)), relayer)
    b.record("ConsentRegistry", "grantWithSig (ERC-1271 wallet)", gas, "All scope; first signature")

    reason = keccak(text="unconscious patient")
    gas = b.send(
        f.openBreakGlass(patient.address, clinician, keccak(text="r"), 3600, reason), relayer
    )
    b.record("ConsentRegistry", "openBreakGlass", gas, "one record, 1 h")
    gas = b.send(f.openBreakGlass(patient.address, clinician, ZERO32, 86400, reason), relayer)
    b.record("ConsentRegistry", "openBreakGlass", gas, "all records, 24 h")


def _access_log(b: Bench, log: Contract) -> None:
    actors = [Account.from_key(keccak(text=f"actor-{i}")).address for i in range(5)]
    patients = [Account.from_key(keccak(text=f"patient-{i}")).address for i in range(20)]
    for n in (1, 10, 100):
        entries = [
            (patients[i % 20], keccak(text=f"rec-{i}"), actors[i % 5], i % 4 != 0, (i % 4) + 1)
            for i in range(n)
        ]
        gas = b.send(log.functions.recordAccesses(entries), b.accounts[1])
        label = f"recordAccesses ({n} entr{'ies' if n != 1 else 'y'})"
        b.record("AccessLog", label, gas, f"{gas / n:,.0f} per entry")


# ---------------------------------------------------------------- zero-knowledge access

INTRINSIC = 21_000


def _zk(b: Bench, consortium: str) -> None:
    """ZK contracts: deployment, credential registry, verifier and gate (real proofs of the
    clinician_access circuit from a dev setup)."""
    import tempfile

    from zk.field import hash_to_field
    from zk.merkle import CredentialTree
    from zk.poseidon import poseidon
    from zk.prover import Groth16Prover
    from zk.registry import get_circuit
    from zk.setup import dev_setup

    rows = b.zk_rows
    a = b.accounts
    keys = dev_setup(get_circuit("clinician_access"), tempfile.mkdtemp(prefix="gas-zk-"))
    prover = Groth16Prover(keys)
    first_block = b.w3.eth.block_number + 1
    dep = deploy_zk_contracts(b.w3, consortium, keys.verification_key_json)
    names = ["PoseidonT3", "CredentialRegistry", "ClinicianAccessVerifier", "ZkAccessGate"]
    notes = ["library", "PoseidonT3 linked", "key in immutables (6 inputs)", ""]
    for offset, (name, note) in enumerate(zip(names, notes, strict=True)):
        block = b.w3.eth.get_block(first_block + offset)
        rows.append((name, "deploy", b.gas(block["transactions"][0]), note))
    registry = b.contract("CredentialRegistry", dep.credential_registry)
    gate = b.contract("ZkAccessGate", dep.zk_access_gate)
    verifier = b.contract("ClinicianAccessVerifier", dep.clinician_verifier)

    hospital = a[0]
    secret, role, expiry = 123456789, 1, START_TIME + 10 * 365 * 86400
    leaf = poseidon([secret, int(hospital, 16), role, expiry])
    tree = CredentialTree()
    reg = registry.functions
    gas = b.send(reg.addCredential(leaf), hospital)
    rows.append(("CredentialRegistry", "addCredential (first leaf)", gas, "depth 20"))
    tree.insert(leaf)
    extra = [int.from_bytes(keccak(text=f"cred-{i}"), "big") >> 8 for i in range(11)]
    gas = b.send(reg.addCredential(extra[0]), hospital)
    rows.append(("CredentialRegistry", "addCredential", gas, "second leaf"))
    gas = b.send(reg.addCredentials(extra[1:]), hospital)
    rows.append(
        ("CredentialRegistry", "addCredentials (10 leaves)", gas, f"{gas / 10:,.0f} per leaf")
    )
    tree.insert_many(extra)
    victim = extra[5]
    path = tree.path(tree.index_of(victim))
    gas = b.send(reg.revokeCredential(victim, list(path.siblings), list(path.indices)), hospital)
    rows.append(("CredentialRegistry", "revokeCredential", gas, "Merkle path of 20"))
    tree.remove(tree.index_of(victim))
    assert reg.root().call() == tree.root

    category = keccak(text="radiology")
    mask = 0b11
    gas = b.send(gate.functions.setCategoryPolicy(category, mask), hospital)
    rows.append(("ZkAccessGate", "setCategoryPolicy", gas, ""))

    now = b.now()
    path = tree.path(tree.index_of(leaf))

    def proof(label: str) -> tuple[tuple[Any, ...], list[int]]:
        record_id, signal = keccak(text=f"rec-{label}"), keccak(text=f"sig-{label}")
        ext = hash_to_field(record_id + signal)
        inputs = {
            "root": tree.root,
            "allowedRoles": mask,
            "currentTime": now,
            "externalNullifier": ext,
            "nullifierHash": poseidon([ext, secret]),
            "signalHash": hash_to_field(signal),
            "secret": secret,
            "hospitalId": int(hospital, 16),
            "role": role,
            "licenceExpiry": expiry,
            "pathElements": list(path.siblings),
            "pathIndices": list(path.indices),
        }
        p = prover.prove(inputs)
        request = (record_id, category, tree.root, now, signal, inputs["nullifierHash"])
        return request, list(p.words)

    request, words = proof("verify")
    inputs = gate.functions.publicInputs(request).call()
    gas = b.send(verifier.functions.verifyProof(words, inputs), a[1])
    rows.append(
        (
            "ClinicianAccessVerifier",
            "verifyProof (transaction)",
            gas,
            f"{gas - INTRINSIC:,} without the 21,000 intrinsic; 4 pairings + 6 ecMul",
        )
    )
    request, words = proof("single")
    gas = b.send(gate.functions.access(request, words), a[1])
    rows.append(
        (
            "ZkAccessGate",
            "access (1 proof)",
            gas,
            f"{gas - INTRINSIC:,} without the 21,000 intrinsic; target <= 250,000",
        )
    )
    for k in (1, 4, 16):
        batch = [proof(f"batch-{k}-{i}") for i in range(k)]
        gas = b.send(gate.functions.accessBatch([r for r, _ in batch], [w for _, w in batch]), a[1])
        note = f"{gas / k:,.0f} per proof ({k + 3} pairings)"
        if k == 16:
            note += "; target <= 100,000 per proof"
        rows.append(("ZkAccessGate", f"accessBatch ({k} proof{'s' if k > 1 else ''})", gas, note))


def render(rows: list[Row], zk_rows: list[Row] | None = None) -> str:
    lines = [
        "# Gas report",
        "",
        "Generated by:",
        "",
        "```",
        COMMAND,
        "```",
        "",
        "Measured on the in-memory eth-tester chain (py-evm, Prague rules, EIP-7623 calldata",
        "floor), contracts compiled with solc 0.8.30, optimizer on (200 runs), evmVersion",
        "cancun. `gasUsed` of each transaction receipt, 21,000 base cost and calldata",
        "included. Clock pinned, so numbers are reproducible.",
        "",
        "| contract | operation | gas | note |",
        "|---|---|---:|---|",
    ]
    lines += [f"| {c} | {op} | {gas:,} | {note} |" for c, op, gas, note in rows]
    if zk_rows:
        lines += [
            "",
            "## Zero-knowledge access",
            "",
            "Same chain and method; real `clinician_access` proofs (dev setup), 6 public",
            "inputs. Gate rows include verification, the nullifier store (a new slot,",
            "22,100), the `ZkAccessGranted` event, the registry root check and calldata.",
            "Precompile floor of one proof (EIP-1108): 4 pairings = 181,000 and 6 ecMul =",
            "36,000, so `access` cannot go below ~260,000 with intrinsic and nullifier.",
            "Keys and proofs are fresh each run: calldata, hence gas, varies by a few",
            "hundred at most. Cross-checked on `npx hardhat node` (EDR, same rows through",
            "JSON-RPC): identical up to that calldata noise.",
            "",
            "| contract | operation | gas | note |",
            "|---|---|---:|---|",
        ]
        lines += [f"| {c} | {op} | {gas:,} | {note} |" for c, op, gas, note in zk_rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "gas.md")
    args = parser.parse_args(argv)
    bench = Bench()
    contracts = _deployments(bench)
    steps: list[Callable[[], None]] = [
        lambda: _consortium(bench, contracts["Consortium"]),
        lambda: _records(bench, contracts["RecordRegistry"]),
        lambda: _consent(bench, contracts["ConsentRegistry"]),
        lambda: _access_log(bench, contracts["AccessLog"]),
        lambda: _zk(bench, contracts["Consortium"].address),
    ]
    for step in steps:
        step()
    text = render(bench.rows, bench.zk_rows)
    args.output.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
