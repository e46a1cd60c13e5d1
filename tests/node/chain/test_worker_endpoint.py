"""The worker's internal endpoint over real HTTP: an API-side ``Web3ChainClient`` reads the
embedded chain through ``POST /rpc`` and sends through ``RemoteTransactionSender`` (the
worker's ``LocalTransactionSender`` signs), for anchoring, relayed consent, access logging,
audit queries, record verification and the ZK gate; plus the secret, the read-only
allowlist and a worker that went away."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from eth_account import Account
from web3.exceptions import Web3RPCError

from hsm.account import SignerAccount
from hsm.software import SoftwareSigner
from node.chain.client import Web3ChainClient
from node.chain.deploy import Deployment
from node.chain.embedded import EmbeddedChain
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted
from node.chain.external import ensure_deployment
from node.chain.merkle import MerkleTree, record_leaf
from node.chain.models import AccessEntry, ConsentGrant
from node.chain.record_ids import new_record_id
from node.chain.sender import (
    LocalTransactionSender,
    RemoteTransactionSender,
    decode_error_args,
    encode_error_args,
)
from node.chain.worker_endpoint import WorkerEndpoint
from node.chain.worker_rpc import connect_worker_rpc
from node.consent.typed_data import AccessBasis, ScopeKind, category_hash, full_message

SECRET = secrets.token_bytes(32)
FUNDS = 10**24


@dataclass
class Worker:
    chain: EmbeddedChain
    deployment: Deployment
    hospital: SignerAccount
    local: Web3ChainClient  # the worker's own client (LocalTransactionSender)
    endpoint: WorkerEndpoint
    woken: list[str]
    tmp: Path


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("worker")
    hospital = SignerAccount(SoftwareSigner(secrets.token_bytes(32)))
    chain = EmbeddedChain(tmp / "chain.sqlite", funded_accounts={hospital.address: FUNDS})
    deployment = ensure_deployment(
        chain.web3, tmp / "deployment.json", hospital, [(hospital.address, "General Hospital")]
    )
    local = Web3ChainClient(chain.web3, deployment, hospital)
    woken: list[str] = []

    def wake(name: str) -> bool:
        if name not in ("anchorer", "access-log"):
            return False
        woken.append(name)
        return True

    endpoint = WorkerEndpoint(
        rpc=chain.web3.provider.make_request,  # type: ignore[attr-defined]
        sender=local.sender,
        wake=wake,
        status=lambda: {"holder": "test", "fence": 1, "workers": {}},
        secret=SECRET,
        host="127.0.0.1",
        port=0,
    )
    try:
        yield Worker(chain, deployment, hospital, local, endpoint, woken, tmp)
    finally:
        endpoint.close()
        chain.close()


def api_client(url: str, deployment: Deployment, secret: bytes = SECRET) -> Web3ChainClient:
    """What an API process builds: reads over /rpc, sends over /send, no key."""
    w3 = connect_worker_rpc(url, secret)
    sender = RemoteTransactionSender(lambda: url, secret, w3)
    return Web3ChainClient(w3, deployment, None, sender=sender)


@pytest.fixture(scope="module")
def api(worker: Worker) -> Iterator[Web3ChainClient]:
    client = api_client(worker.endpoint.url, worker.deployment)
    try:
        yield client
    finally:
        client.close()


def anchor(client: Web3ChainClient, n: int) -> tuple[int, list[tuple[bytes, str, bytes]]]:
    member = client.member_id(client.hospital)
    records = [
        (new_record_id(member), Account.create().address, secrets.token_bytes(32)) for _ in range(n)
    ]
    tree = MerkleTree([record_leaf(rid, p, h, None) for rid, p, h in records])
    result = client.anchor_batch(tree.root, [r[0] for r in records], [r[1] for r in records])
    return result.batch_id, records


# -- the API client end to end -------------------------------------------------------------
def test_api_client_reads_and_sends_through_the_worker(
    worker: Worker, api: Web3ChainClient
) -> None:
    assert api.hospital == worker.hospital.address  # from GET /status
    assert api.web3.eth.chain_id == worker.chain.chain_id
    start = api.head_block() + 1

    batch_id, records = anchor(api, 3)
    info = api.batch(batch_id)
    assert info is not None and (info.hospital, info.count) == (worker.hospital.address, 3)
    tree = MerkleTree([record_leaf(rid, p, h, None) for rid, p, h in records])
    for i, (rid, patient, content) in enumerate(records):
        assert api.verify_record(batch_id, rid, patient, content, None, tree.proof(i))
    rid, patient, content = records[0]
    assert not api.verify_record(batch_id, rid, patient, b"\x01" * 32, None, tree.proof(0))
    # The worker's own client sees the same chain (one account, one nonce sequence).
    assert worker.local.batch(batch_id) == info

    # A patient-signed grant, relayed by the API process.
    patient = Account.create()
    clinician = Account.create().address
    labs = category_hash("labs")
    domain = api.consent_domain()
    assert domain["verifyingContract"] == worker.deployment.consent_registry
    now = int(time.time())
    grant = ConsentGrant(
        patient=patient.address,
        grantee=clinician,
        scope_kind=ScopeKind.CATEGORY,
        scope=labs,
        expires_at=now + 3600,
        nonce=api.consent_nonce(patient.address),
        deadline=now + 600,
    )
    signature = Account.sign_typed_data(
        patient.key, full_message=full_message("Grant", grant.message(), domain)
    ).signature
    assert api.grant_with_sig(grant, signature).block_number > 0
    assert api.consent_nonce(patient.address) == grant.nonce + 1
    assert api.access_basis(patient.address, clinician, rid, labs) == AccessBasis.CATEGORY_CONSENT
    with pytest.raises(ContractReverted) as replayed:  # decoded in the API's simulation
        api.grant_with_sig(grant, signature)
    assert replayed.value.name == "InvalidAccountNonce"

    doctor = Account.create().address
    api.record_accesses(
        [
            AccessEntry(patient_, rid_, doctor, True, AccessBasis.RECORD_CONSENT)
            for rid_, patient_, _ in records[:2]
        ]
    )
    by_actor = api.audit_events(actor=doctor)
    assert [(e.event, e.args["patient"]) for e in by_actor] == [
        ("AccessRecorded", records[0][1]),
        ("AccessRecorded", records[1][1]),
    ]
    assert all(e.timestamp > 0 for e in by_actor)  # eth_getBlockByNumber over /rpc
    recent = [e.event for e in api.audit_events(from_block=start)]
    assert recent[:4] == ["BatchAnchored", "RecordAnchored", "RecordAnchored", "RecordAnchored"]
    assert recent.count("ConsentGranted") == 1 and recent.count("AccessRecorded") == 2
    assert patient.address in [p for p, _b in api.consent_changes(start, api.head_block())]


def test_concurrent_api_sends_share_the_workers_nonces(
    worker: Worker, api: Web3ChainClient
) -> None:
    other = api_client(worker.endpoint.url, worker.deployment)  # a second API process
    errors: list[BaseException] = []
    blocks: list[int] = []

    def send(client: Web3ChainClient) -> None:
        try:
            patient, doctor = Account.create().address, Account.create().address
            rid = new_record_id(1)
            entry = AccessEntry(patient, rid, doctor, False, AccessBasis.NONE)
            blocks.append(client.record_accesses([entry]).block_number)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=send, args=(c,)) for c in (api, other, api, other)]
    threads.append(threading.Thread(target=lambda: blocks.append(anchor(worker.local, 1)[0])))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    other.close()
    assert errors == []
    assert len(blocks) == 5


def test_a_revert_on_chain_comes_back_as_contract_reverted(
    worker: Worker, api: Web3ChainClient
) -> None:
    """Sent unsimulated (the sender alone): mined with status 0, answered 409."""
    registry = api.web3.eth.contract(
        address=worker.deployment.record_registry,
        abi=worker.local._c["RecordRegistry"].abi,  # type: ignore[attr-defined]
    )
    foreign = new_record_id(99)  # another member's namespace
    data = registry.functions.anchorBatch(
        secrets.token_bytes(32), [foreign], [Account.create().address]
    )._encode_transaction_data()
    with pytest.raises(ContractReverted) as reverted:
        api.sender.send(worker.deployment.record_registry, bytes.fromhex(data[2:]), 300_000)
    assert reverted.value.name == "Reverted"
    anchor(api, 1)  # the nonce moved on with the mined revert: the next send works


def test_error_args_survive_json() -> None:
    args = (b"\x01\x02", 7, "x", True, (b"\xff", 2**200))
    wire = json.loads(json.dumps(encode_error_args(args)))
    assert decode_error_args(wire) == args


def test_zk_gate_reads_and_sends_through_the_worker(worker: Worker, api: Web3ChainClient) -> None:
    from node.chain.zk_gate import Web3ZkGate
    from node.zkaccess.deployment import ensure_zk_deployment
    from tests.node.production import TEST_ZK_KEYS
    from zk.registry import get_circuit
    from zk.setup import dev_setup

    keys = dev_setup(get_circuit("clinician_access"), TEST_ZK_KEYS)
    sender = worker.local.sender
    assert isinstance(sender, LocalTransactionSender)
    with sender.lock:  # deployed from the hospital's account, outside its sender
        zk_deployment, _ = ensure_zk_deployment(
            worker.chain.web3,
            worker.tmp / "zk-deployment.json",
            worker.hospital,
            worker.deployment.consortium,
            worker.deployment.consent_registry,
            keys.verification_key_json,
            max_proof_age=3600,
            max_clock_skew=900,
            epoch_length=86400,
        )
        sender.reset_nonce()
    gate = Web3ZkGate(api, zk_deployment)
    assert gate.chain_id == worker.chain.chain_id
    assert gate.epoch_length() == 86400
    assert gate.category_policy(category_hash("labs")) == 0
    empty_root = gate.current_root()
    tx = gate.issue_credentials([12345], [1], [int(time.time()) + 86400])
    root = gate.current_root()
    assert root != empty_root and gate.is_valid_root(root)
    issued = gate.credential_events(tx.block_number, tx.block_number)
    assert [(e.kind, e.identity_commitment, e.root) for e in issued] == [("issued", 12345, root)]
    assert gate.access_events() == []
    assert not gate.request_used(b"\x00" * 32, b"\x00" * 32)


# -- the endpoint's own rules ----------------------------------------------------------------
def test_wrong_or_missing_secret_is_401(worker: Worker) -> None:
    url = worker.endpoint.url
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    for headers in ({}, {"Authorization": "Bearer " + secrets.token_bytes(32).hex()}):
        for method, path in (("POST", "/rpc"), ("POST", "/send"), ("GET", "/status")):
            answer = requests.request(method, url + path, json=body, headers=headers, timeout=10)
            assert answer.status_code == 401
            assert answer.json()["error"] == "Unauthorized"
            assert answer.headers["WWW-Authenticate"] == "Bearer"
    wrong = api_client(url, worker.deployment, secrets.token_bytes(32))
    with pytest.raises(ChainError) as refused:
        wrong.sender.send(worker.deployment.access_log, b"", 100_000)
    assert type(refused.value) is ChainError and "secret" in str(refused.value)
    wrong.close()


def test_rpc_serves_reads_only(worker: Worker, api: Web3ChainClient) -> None:
    account = Account.create()
    tx = {"to": account.address, "value": 0, "gas": 21_000, "gasPrice": 10**9, "nonce": 0}
    raw = account.sign_transaction({**tx, "chainId": worker.chain.chain_id}).raw_transaction
    with pytest.raises(Web3RPCError, match="not served here"):
        api.web3.eth.send_raw_transaction(raw)
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + SECRET.hex()
    url = worker.endpoint.url
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_sendTransaction", "params": [{}]},
        {"jsonrpc": "2.0", "id": 3, "method": "evm_mine", "params": []},
    ]
    answers = session.post(url + "/rpc", json=batch, timeout=10).json()
    assert answers[0]["result"].startswith("0x")
    assert [a["error"]["code"] for a in answers[1:]] == [-32601, -32601]
    assert session.post(url + "/rpc", data=b"{nope", timeout=10).json()["error"]["code"] == -32700
    bad_send = session.post(url + "/send", json={"to": "0x12", "data": "0x", "gas": 1}, timeout=10)
    assert bad_send.status_code == 400 and bad_send.json()["error"] == "BadRequest"
    assert "Traceback" not in bad_send.text
    assert session.get(url + "/nowhere", timeout=10).status_code == 404
    assert session.get(url + "/send", timeout=10).status_code == 405


def test_status_and_wake(worker: Worker) -> None:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + SECRET.hex()
    url = worker.endpoint.url
    status = session.get(url + "/status", timeout=10).json()
    assert status == {
        "holder": "test",
        "fence": 1,
        "workers": {},
        "address": worker.hospital.address,
    }
    assert session.post(url + "/wake/anchorer", timeout=10).json() == {"woken": "anchorer"}
    assert worker.woken[-1] == "anchorer"
    unknown = session.post(url + "/wake/nobody", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"] == "UnknownWorker"


def test_worker_gone_is_chain_unavailable(worker: Worker) -> None:
    endpoint = WorkerEndpoint(
        rpc=worker.chain.web3.provider.make_request,  # type: ignore[attr-defined]
        sender=LocalTransactionSender(worker.chain.web3, worker.hospital),
        wake=lambda name: False,
        status=dict,
        secret=SECRET,
        port=0,
    )
    client = api_client(endpoint.url, worker.deployment)
    assert client.head_block() > 0  # a pooled keep-alive connection is now open
    address = client.hospital
    endpoint.close()
    with pytest.raises(ChainUnavailable):
        client.head_block()
    with pytest.raises(ChainUnavailable):
        client.sender.send(worker.deployment.access_log, b"", 100_000)
    assert client.hospital == address  # the cached address outlives the worker
    client.close()
    nobody = RemoteTransactionSender(lambda: endpoint.url, SECRET)
    with pytest.raises(ChainUnavailable):
        _ = nobody.address


def test_local_sender_without_an_account_is_refused(worker: Worker) -> None:
    with pytest.raises(ValueError, match="account or a sender"):
        Web3ChainClient(worker.chain.web3, worker.deployment, None)


def test_api_client_cannot_rotate_the_signer(api: Web3ChainClient) -> None:
    with pytest.raises(ChainError, match="worker sends"):
        api.switch_signer(SoftwareSigner(secrets.token_bytes(32)))


def test_state_database_down_while_signing_is_503_and_nothing_is_sent(worker: Worker) -> None:
    """The worker writes its key audit log before each signature: with that database
    away (a MySQL outage) ``/send`` answers 503, which the API side reads as
    ChainUnavailable (a consent is then queued), never a 500 (found by the chaos run)."""
    from storage.exceptions import BackendUnavailable

    class AuditLogDown(LocalTransactionSender):
        def send(self, to: str, data: bytes, gas: int) -> bytes:
            raise BackendUnavailable("state database at db:3306 is unavailable: cannot connect")

    endpoint = WorkerEndpoint(
        rpc=worker.chain.web3.provider.make_request,  # type: ignore[attr-defined]
        sender=AuditLogDown(worker.chain.web3, worker.hospital),
        wake=lambda name: False,
        status=dict,
        secret=SECRET,
        port=0,
    )
    try:
        client = api_client(endpoint.url, worker.deployment)
        nonce = worker.chain.web3.eth.get_transaction_count(worker.hospital.address)
        with pytest.raises(ChainUnavailable, match="unavailable"):
            client.sender.send(worker.deployment.access_log, b"", 100_000)
        assert worker.chain.web3.eth.get_transaction_count(worker.hospital.address) == nonce
        client.close()
    finally:
        endpoint.close()
