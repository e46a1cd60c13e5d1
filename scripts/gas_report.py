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
from web3.logs import DISCARD  # noqa: E402

from node.chain.artifacts import load_artifact  # noqa: E402
from node.chain.deploy import deploy_contracts  # noqa: E402
from node.chain.wallet_typed_data import full_message as wallet_message  # noqa: E402
from node.chain.wallet_typed_data import wallet_domain  # noqa: E402
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
        self.wallet_rows: list[Row] = []

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
    member = b.contract("Consortium", r.functions.consortium().call())
    prefix = member.functions.memberId(b.accounts[0]).call().to_bytes(4, "big")

    def record_id(label: str) -> bytes:  # in the anchoring hospital's namespace
        return prefix + keccak(text=label)[4:]

    first = b.send(
        r.functions.anchorBatch(keccak(text="warm-up"), [record_id("warm-up")], [patients[0]]),
        b.accounts[0],
    )
    b.record(
        "RecordRegistry", "anchorBatch (first batch ever, 1 record)", first, "batch counter 0 -> 1"
    )
    for n in (1, 10, 100, 1000):
        ids = [record_id(f"record-{n}-{i}") for i in range(n)]
        pts = [patients[i % len(patients)] for i in range(n)]
        root = keccak(encode(["uint256"], [n]))
        gas = b.send(r.functions.anchorBatch(root, ids, pts), b.accounts[0])
        label = f"anchorBatch ({n} record{'s' if n != 1 else ''})"
        b.record("RecordRegistry", label, gas, f"{gas / n:,.0f} per record")
    for n in (1, 10, 100):
        ids = [record_id(f"record-{n}-{i}") for i in range(n)]
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


def _wallets(b: Bench, consent: Contract) -> None:
    """RecoverableWalletFactory and a wallet's life: creation, ERC-1271 consent, recovery."""
    a = b.accounts
    art = load_artifact("RecoverableWalletFactory")
    deployer = b.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    tx = deployer.constructor().transact({"from": a[0], "gas": 29_000_000})
    factory = b.contract(
        "RecoverableWalletFactory", b.w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    )
    rows = b.wallet_rows
    rows.append(("RecoverableWalletFactory", "deploy", b.gas(tx), "deploys the implementation"))
    owner, new_owner = (Account.from_key(keccak(text=f"wallet-{n}")) for n in ("owner", "new"))
    guardians = [Account.from_key(keccak(text=f"guardian-{i}")) for i in range(3)]
    chain_id = b.w3.eth.chain_id

    def create(gs: list[str], threshold: int, salt: bytes) -> Contract:
        fn = factory.functions.createWallet(owner.address, gs, threshold, 86_400, salt)
        address = fn.call({"from": a[0]})
        rows.append(
            (
                "RecoverableWalletFactory",
                f"createWallet ({len(gs)} guardian{'s' if len(gs) > 1 else ''})",
                b.send(fn, a[0]),
                f"threshold {threshold}; an EIP-1167 clone",
            )
        )
        return b.contract("RecoverableWallet", address)

    create([guardians[0].address], 1, ZERO32)
    wallet = create([g.address for g in guardians], 2, ZERO32)
    create([Account.from_key(keccak(text=f"g8-{i}")).address for i in range(8)], 5, ZERO32)

    dom = _domain(consent)
    msg = {
        "patient": wallet.address,
        "grantee": a[5],
        "scopeKind": 2,
        "scope": ZERO32,
        "expiresAt": b.now() + 86_400 * 30,
        "nonce": 0,
        "deadline": b.now() + 3_600,
    }
    fn = consent.functions.grantWithSig(tuple(msg.values()), _sign(owner.key, "Grant", msg, dom))
    rows.append(
        (
            "ConsentRegistry",
            "grantWithSig (RecoverableWallet patient)",
            b.send(fn, a[0]),
            "All scope; first signature; ERC-1271 through the clone",
        )
    )

    wdom = wallet_domain(chain_id, wallet.address)

    def approval(g: Any, nonce: int) -> Any:
        m = {"newOwner": new_owner.address, "nonce": nonce, "deadline": b.now() + 3_600}
        sig = Account.sign_typed_data(
            g.key, full_message=wallet_message("ApproveRecovery", m, wdom)
        )
        return wallet.functions.approveRecovery(
            new_owner.address, g.address, m["deadline"], bytes(sig.signature)
        )

    def cancel(nonce: int) -> Any:
        m = {"nonce": nonce, "deadline": b.now() + 3_600}
        sig = Account.sign_typed_data(
            owner.key, full_message=wallet_message("CancelRecovery", m, wdom)
        )
        return wallet.functions.cancelRecovery(m["deadline"], bytes(sig.signature))

    rows.append(
        (
            "RecoverableWallet",
            "approveRecovery (below the threshold)",
            b.send(approval(guardians[0], 0), a[0]),
            "1 of 2; EOA guardian",
        )
    )
    rows.append(
        (
            "RecoverableWallet",
            "approveRecovery (reaches the threshold)",
            b.send(approval(guardians[1], 0), a[0]),
            "2 of 2: recovery pending",
        )
    )
    rows.append(
        (
            "RecoverableWallet",
            "cancelRecovery",
            b.send(cancel(0), a[0]),
            "owner's signature; voids the round",
        )
    )
    b.send(approval(guardians[0], 1), a[0])
    b.send(approval(guardians[2], 1), a[0])
    b.tester.time_travel(b.now() + 86_400)
    rows.append(
        (
            "RecoverableWallet",
            "finalizeRecovery",
            b.send(wallet.functions.finalizeRecovery(), a[0]),
            "after the delay",
        )
    )


def _domain(consent: Contract) -> dict[str, Any]:
    _f, name, version, chain_id, verifying, _s, _e = consent.functions.eip712Domain().call()
    return {"name": name, "version": version, "chainId": chain_id, "verifyingContract": verifying}


INTRINSIC = 21_000


def calldata_gas(data: bytes) -> int:
    """EIP-2028 calldata cost (4 per zero byte, 16 per nonzero byte)."""
    return sum(4 if x == 0 else 16 for x in data)


def _tx_calldata(b: Bench, tx_hash: Any) -> int:
    return calldata_gas(bytes(b.w3.eth.get_transaction(tx_hash)["input"]))


def _send_tx(b: Bench, fn: Any, sender: str) -> tuple[int, int]:
    """(gasUsed, calldata gas) of one transaction."""
    tx_hash = fn.transact({"from": sender, "gas": 29_000_000})
    return b.gas(tx_hash), _tx_calldata(b, tx_hash)


def _pass_call(b: Bench, consortium: Contract, target: str, data: bytes) -> int:
    """A call proposal by member 0, executed by member 1's vote; the vote's gas."""
    a = b.accounts
    receipt = b.w3.eth.wait_for_transaction_receipt(
        consortium.functions.proposeCall(target, data, "gas report").transact(
            {"from": a[0], "gas": 29_000_000}
        )
    )
    (created,) = consortium.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    pid = created["args"]["id"]
    gas = 0
    for voter in a[1:3]:  # 4 members by now: a[0] + two votes are a strict majority
        if not consortium.functions.proposal(pid).call()[6]:
            gas = b.send(consortium.functions.vote(pid), voter)
    return gas


def _class_grant(b: Bench, consent: Contract, key: bytes, roles: int) -> int:
    _f, name, version, chain_id, verifying, _s, _e = consent.functions.eip712Domain().call()
    domain = {"name": name, "version": version, "chainId": chain_id, "verifyingContract": verifying}
    patient = Account.from_key(key).address
    now = b.now()
    g = {
        "patient": patient,
        "hospital": 0,
        "roles": roles,
        "scopeKind": 2,
        "scope": ZERO32,
        "expiresAt": now + 365 * 86400,
        "nonce": consent.functions.nonces(patient).call(),
        "deadline": now + 3600,
    }
    sig = _sign(key, "GrantClass", g, domain)
    return b.send(consent.functions.grantClassWithSig(tuple(g.values()), sig), b.accounts[0])


def _zk(b: Bench, consortium: Contract, consent: Contract) -> None:
    """ZK contracts v2: deployment, credential registry at several tree sizes, verifier and
    gate (real proofs of the clinician_access circuit from a dev setup)."""
    import tempfile

    from zk.credentials import (
        Identity,
        IssuedCredential,
        clinician_access_inputs,
    )
    from zk.merkle import LeanIMT
    from zk.prover import Groth16Prover
    from zk.registry import get_circuit
    from zk.setup import dev_setup

    rows = b.zk_rows
    a = b.accounts
    keys = dev_setup(get_circuit("clinician_access"), tempfile.mkdtemp(prefix="gas-zk-"))
    prover = Groth16Prover(keys)
    first_block = b.w3.eth.block_number + 1
    dep = deploy_zk_contracts(b.w3, consortium.address, consent.address, keys.verification_key_json)
    names = ["PoseidonT3", "CredentialRegistry", "ClinicianAccessVerifier", "ZkAccessGate"]
    notes = [
        "library (zk/export/poseidon_solidity.py)",
        "PoseidonT3 linked; 32 root slots written",
        "key in immutables (4 inputs)",
        "",
    ]
    for offset, (name, note) in enumerate(zip(names, notes, strict=True)):
        block = b.w3.eth.get_block(first_block + offset)
        rows.append((name, "deploy", b.gas(block["transactions"][0]), note))
    registry = b.contract("CredentialRegistry", dep.credential_registry)
    gate = b.contract("ZkAccessGate", dep.zk_access_gate)
    verifier = b.contract("ClinicianAccessVerifier", dep.clinician_verifier)
    reg = registry.functions
    hospital = a[0]
    hospital_id = consortium.functions.memberId(hospital).call()
    expiry = START_TIME + 10 * 365 * 86400
    tree = LeanIMT()
    counter = iter(range(10**9))

    def idc() -> int:
        return Identity(1000 + next(counter)).commitment

    def _leaf(commitment: int, role: int) -> int:
        from zk.credentials import credential_attributes, credential_leaf

        return credential_leaf(commitment, credential_attributes(hospital_id, role, expiry))

    def fill_to(size: int) -> None:
        while tree.size < size:
            n = min(200, size - tree.size)
            ids = [idc() for _ in range(n)]
            b.send(reg.issueCredentials(ids, [1] * n, [expiry] * n), hospital)
            tree.insert_many([_leaf(i, 1) for i in ids])

    def single(label: str) -> None:
        index = tree.size
        commitment = idc()
        gas = b.send(reg.issueCredential(commitment, 1, expiry), hospital)
        tree.insert(_leaf(commitment, 1))
        hashes = 1 + bin(index).count("1")
        rows.append(
            (
                "CredentialRegistry",
                f"issueCredential ({label})",
                gas,
                f"index {index}: {hashes} Poseidon (leaf + popcount {hashes - 1}); "
                "target <= 150,000",
            )
        )

    # the doctor's own credential is the first leaf
    doctor = Identity(424242)
    gas = b.send(reg.issueCredential(doctor.commitment, 0, expiry), hospital)
    tree.insert(_leaf(doctor.commitment, 0))
    rows.append(
        (
            "CredentialRegistry",
            "issueCredential (1st leaf)",
            gas,
            "index 0: 1 Poseidon (the leaf), first-ever writes; target <= 150,000",
        )
    )
    single("2nd leaf")
    fill_to(99)
    single("100th leaf")
    fill_to(999)
    single("1000th leaf")
    fill_to(1024)
    single("1025th leaf")
    # average over 64 consecutive single issues (indexes 1025..1088)
    total = 0
    start = tree.size
    mean_hashes = 1 + sum(bin(i).count("1") for i in range(start, start + 64)) / 64
    for _ in range(64):
        commitment = idc()
        total += b.send(reg.issueCredential(commitment, 1, expiry), hospital)
        tree.insert(_leaf(commitment, 1))
    rows.append(
        (
            "CredentialRegistry",
            "issueCredential (mean of 64)",
            total // 64,
            f"indexes {start}..{start + 63}, {mean_hashes:.1f} Poseidon on average",
        )
    )
    for k in (16, 64):
        ids = [idc() for _ in range(k)]
        gas = b.send(reg.issueCredentials(ids, [1] * k, [expiry] * k), hospital)
        tree.insert_many([_leaf(i, 1) for i in ids])
        rows.append(
            (
                "CredentialRegistry",
                f"issueCredentials ({k})",
                gas,
                f"{gas / k:,.0f} per credential",
            )
        )
    assert reg.root().call() == tree.root
    victim_idc = idc()
    b.send(reg.issueCredential(victim_idc, 1, expiry), hospital)
    victim = _leaf(victim_idc, 1)
    tree.insert(victim)
    proof = tree.generate_proof(tree.index_of(victim))
    gas = b.send(
        reg.revokeCredential(victim_idc, hospital_id, 1, expiry, list(proof.siblings)), hospital
    )
    tree.remove(tree.index_of(victim))
    rows.append(
        (
            "CredentialRegistry",
            "revokeCredential",
            gas,
            f"{tree.size} leaves, {proof.depth} siblings",
        )
    )
    assert reg.root().call() == tree.root

    category = keccak(text="radiology")
    mask = 0b11
    data = bytes.fromhex(gate.encode_abi("setCategoryPolicy", args=[category, mask])[2:])
    gas = _pass_call(b, consortium, gate.address, data)
    rows.append(
        ("ZkAccessGate", "setCategoryPolicy (by a Consortium vote)", gas, "the deciding vote")
    )
    patient_key = keccak(text="patient-zk-gas")
    patient = Account.from_key(patient_key).address
    gas = _class_grant(b, consent, patient_key, 0b01)
    rows.append(("ConsentRegistry", "grantClassWithSig (EOA patient)", gas, "physicians, all"))

    issued = IssuedCredential(doctor, hospital_id, 0, expiry)
    now = b.now()
    chain_id = b.w3.eth.chain_id
    mp = tree.generate_proof(tree.index_of(issued.leaf))

    def proof_for(label: str) -> tuple[tuple[Any, ...], list[int]]:
        record_id, signal = keccak(text=f"rec-{label}"), keccak(text=f"sig-{label}")
        inputs = clinician_access_inputs(
            doctor,
            issued,
            mp,
            tree.root,
            now,
            0b01,
            0,
            signal,
            chain_id,
            gate.address,
            record_id,
            patient,
            category,
        )
        p = prover.prove(inputs)
        request = (
            record_id,
            patient,
            category,
            2,
            0,
            0b01,
            tree.root,
            now,
            signal,
            inputs["epochNullifier"],
        )
        return request, list(p.words)

    request, words = proof_for("verify")
    inputs = gate.functions.publicInputs(request).call()
    gas, cd = _send_tx(b, verifier.functions.verifyProof(words, inputs), a[1])
    rows.append(
        (
            "ClinicianAccessVerifier",
            "verifyProof (transaction)",
            gas,
            f"{gas - INTRINSIC - cd:,} execution (21,000 intrinsic, {cd:,} calldata); "
            "4 pairings + 4 ecMul",
        )
    )
    request, words = proof_for("single")
    gas, cd = _send_tx(b, gate.functions.access(request, words), a[1])
    rows.append(
        (
            "ZkAccessGate",
            "access (1 proof)",
            gas,
            f"{gas - INTRINSIC - cd:,} execution, {cd:,} calldata; target <= 280,000",
        )
    )
    for k in (1, 4, 16):
        batch = [proof_for(f"batch-{k}-{i}") for i in range(k)]
        gas, cd = _send_tx(
            b, gate.functions.accessBatch([r for r, _ in batch], [w for _, w in batch]), a[1]
        )
        note = f"{gas / k:,.0f} per proof ({k + 3} pairings; calldata {cd / k:,.0f} per proof)"
        if k == 16:
            note += "; target <= 85,000 per proof"
        rows.append(("ZkAccessGate", f"accessBatch ({k} proof{'s' if k > 1 else ''})", gas, note))


ZK_ANALYSIS = [
    "",
    "### Targets (issue 9) and where the gas goes",
    "",
    "| target | measured | met? |",
    "|---|---|---|",
    "| `access`, one proof, 21,000 included: <= 280,000 | ~291,400 | no, ~11,400 over"
    " (this design's fixed part is ~281,000) |",
    "| `accessBatch` k = 16: <= 85,000 per proof | ~98,900 per proof | no (floor ~93,300"
    " at k = 16, ~82,700 at k = 64) |",
    "| `issueCredential` <= 150,000 | 100,442 (1st leaf) ... 170,458 (100th), 236,919"
    " (1000th); mean of 64 at ~1,100 leaves 191,279 | only in small trees (up to ~16 leaves) |",
    "| `issueCredentials` cheaper per credential | ~69,100 (16), ~62,800 (64) per"
    " credential | yes |",
    "| below Semaphore v4 `validateProof` (~286-290k) | ~291,400 (Semaphore reads neither"
    " a consent nor another contract's root) | no |",
    "",
    "What changed since the first v2 build (B's numbers, same script): `access` 291,998 ->",
    "~291,400; `accessBatch` k = 16 101,096 -> ~98,900 per proof; `issueCredential` 1st leaf",
    "178,731 -> 100,442, 1000th 395,813 -> 236,919, mean of 64 293,071 -> 191,279; batches",
    "101,404 (16) / 92,587 (64) -> 69,116 / 62,792 per credential; `revokeCredential` 384,582 ->",
    "228,621. Step by step (each measured alone, in this order):",
    "",
    "- PoseidonT3 at 1,000,000 optimizer runs (poseidon-solidity; the constant optimizer no",
    "  longer rebuilds the round constants): 1,000th leaf 395,813 -> 295,850 (-11,100 a hash).",
    "- Root history in a ring of 32 slots (written nonzero by the constructor, so recording a",
    "  root rewrites a slot, 5,000, instead of creating a mapping entry, 22,100): -17,100 per",
    "  issuance and revocation (1,000th leaf 295,850 -> 278,778); CredentialRegistry creation",
    "  +770,000 (2.67M, under the 3M zk_deploy.py sends).",
    "- PoseidonT3 generated by `zk/export/poseidon_solidity.py` from zk.poseidon's constants in",
    "  circomlib's optimized form (57 partial rounds with the sparse matrices: 8 instead of 12",
    "  multiplications a round; same library name and function, linked as before): ~15,000 gas",
    "  a hash inside the library instead of ~18,300 (1,000th leaf 278,778 -> 249,744); creation",
    "  3.93M instead of 5.15M.",
    "- LeanIMT with packed state (size, depth and the two root counters in one slot; the root",
    "  kept once, in the ring, instead of also in `sideNodes[depth]`; zk-kit's algorithm",
    "  otherwise line for line): -12,800 per issuance (1,000th leaf 249,744 -> 236,919; 1st leaf",
    "  147,307 -> 100,442: no first-ever size, depth and root writes).",
    "- Gate: hand-encoded `verifyProof`/`verifyBatch` calldata (the batch's public inputs are",
    "  written straight into the call buffer: no ABI re-encoding, no per-proof memory arrays),",
    "  hashes in scratch memory, and the consent registry asked once per run of requests naming",
    "  the same (patient, class, scope): `access` -600, `accessBatch` k = 16 -2,200 per proof.",
    "",
    "**`access` (one proof), measured opcode by opcode (py-evm):** 21,000 intrinsic + 7,650",
    "calldata; the verifier's precompiles 206,500 (4 pairings 181,000, 4 ecMul + 4 ecAdd 24,600,",
    "9 calls 900) and its own code 3,250; the request slot 22,100; the `ZkAccessGranted` log",
    "2,900; four cold contracts (Consortium, ConsentRegistry, CredentialRegistry, verifier)",
    "10,400; inside them the member slot 2,100 (+500 code), the class consent slot 2,100 (+1,050),",
    "the root state and ring slots 4,200 (+600); the category policy slot 2,100; the gate's own",
    "code ~4,900. The fixed part alone (all but the ~10,000 of code and ABI) is ~281,000: the",
    "280,000 target needs one of the cold contracts gone. Merging the verifier into the gate (a",
    "generated abstract base, key in immutables) would save its cold account and ABI, ~2,900",
    "(computed from the profile; not built, since it changes the deployment); an EIP-2930",
    "access list on the relayer's transaction saves ~1,400 (200 per cold account, 100 per cold",
    "slot) and is the relaying node's choice.",
    "",
    "**`accessBatch`, k = 16 (1,582,133 gas).** Per proof, fixed: one pairing 34,000, r_i A_i",
    "and r_i C_i (two ecMul, 12,000; EIP-1108 prices a multiplication the same whatever the",
    "scalar, so short randomizers do not help, and r_0 = 1 already saves one pair), one ecAdd",
    "150, the request slot 22,100, the log 2,900, calldata ~7,600: ~79,100. Shared: intrinsic,",
    "pairing base and 3 pairs (168,000), 6 ecMul + 4 ecAdd for alpha and the aggregated inputs",
    "(36,600), the four cold contracts and their slots (~23,000): ~228,000, 14,200 per proof at",
    "k = 16. The floor is therefore ~93,300 at k = 16 (the issue's ~82,000 leaves out the two",
    "ecMul per proof and the log) and ~82,700 at k = 64; code overhead is ~5,600 per proof",
    "(gate ~3,900, verifier ~1,700).",
    "",
    "**Issuance.** The 1,000th leaf (236,919; index 999 has 8 one-bits: 9 Poseidon hashes with",
    "the leaf's): Poseidon 138,400 (9 x ~15,000 in the library + the cold DELEGATECALL), storage",
    "writes 37,900 (the new leaf index 22,100, the state slot, the ring slot, two side nodes),",
    "slot reads 21,000 (the state, the leaf check, one side node per one-bit), the member check",
    "and id in the Consortium (~9,200 with its cold account), the log 2,900, intrinsic and",
    "calldata ~22,300. In general ~91,000 + ~17,000 per one-bit of the new index (a hash and a",
    "cold side-node read) + ~5,000 per zero-bit below the depth (a side-node write) + 22,100",
    "when the tree grows a level: below 150,000 up to ~16 leaves, never in a tree of ~1,000.",
    "The leaf hash computed on-chain (the issuer cannot choose the attributes) is ~15,000 that",
    "zk-kit's 119,000 LeanIMT anchor does not pay. Batches share the per-level hashes and",
    "writes: ~69,100 (16) and ~62,800 (64) per credential.",
]


def render(
    rows: list[Row], zk_rows: list[Row] | None = None, wallet_rows: list[Row] | None = None
) -> str:
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
        "floor), contracts compiled with solc 0.8.30, optimizer on (200 runs; the ZK",
        "contracts and PoseidonT3 at 1,000,000 runs), evmVersion cancun. `gasUsed` of each",
        "transaction receipt, 21,000 base cost and calldata",
        "included. Clock pinned, so numbers are reproducible.",
        "",
        "| contract | operation | gas | note |",
        "|---|---|---:|---|",
    ]
    lines += [f"| {c} | {op} | {gas:,} | {note} |" for c, op, gas, note in rows]
    if zk_rows:
        lines += [
            "",
            "## Zero-knowledge access (v2)",
            "",
            "Same chain and method; real `clinician_access` proofs (dev setup), 4 public",
            "inputs (root, context, scope, epochNullifier). Gate rows include the member check,",
            "the live class-consent read in ConsentRegistry, the registry root check, the",
            "verification, the request slot (a new slot, 22,100) and the `ZkAccessGranted`",
            "event. Keys and proofs are fresh each run: calldata, hence gas, varies by a few",
            "hundred at most. Issuance rows grow with the tree: a LeanIMT insert hashes once",
            "per 1-bit of the new leaf's index, plus the leaf hash computed on-chain.",
            "",
            "| contract | operation | gas | note |",
            "|---|---|---:|---|",
        ]
        lines += [f"| {c} | {op} | {gas:,} | {note} |" for c, op, gas, note in zk_rows]
        lines += ZK_ANALYSIS
    if wallet_rows:
        lines += [
            "",
            "## Recoverable wallets (key loss)",
            "",
            "Same chain and method. A wallet is an EIP-1167 clone of one implementation (the",
            "factory deploys it): creation pays the 45-byte clone and the packed settings (owner,",
            "delay and threshold in one slot) plus one slot per guardian. Each call through a",
            "clone pays a DELEGATECALL (~2,600 cold) and rebuilds the wallet's EIP-712 domain",
            "separator (its own address). The node relays approvals, cancellations and the",
            "finalization; guardians and patients pay nothing.",
            "",
            "| contract | operation | gas | note |",
            "|---|---|---:|---|",
        ]
        lines += [f"| {c} | {op} | {gas:,} | {note} |" for c, op, gas, note in wallet_rows]
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
        lambda: _zk(bench, contracts["Consortium"], contracts["ConsentRegistry"]),
        lambda: _wallets(bench, contracts["ConsentRegistry"]),
    ]
    for step in steps:
        step()
    text = render(bench.rows, bench.zk_rows, bench.wallet_rows)
    args.output.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
