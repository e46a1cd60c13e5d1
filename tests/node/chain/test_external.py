"""External-chain mode against a real JSON-RPC node: ``npx hardhat node`` (EDR) started by
``scripts/chain.sh`` on a free port for the session.

Covers connecting, dev funding, deployment manifests (written, reloaded, refused when they
do not match), ``Web3ChainClient`` end to end over HTTP (anchoring with Merkle proofs,
relayed consent, access logging, audit filters, decoded reverts) and what the node sees
when the chain goes away and comes back.

Tests that send from a hospital account other than through its ``Web3ChainClient`` use an
account of their own: the client keeps a local nonce that foreign sends would make stale.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from eth_account import Account
from web3 import Web3

from hsm.account import SignerAccount
from hsm.software import SoftwareSigner
from node.chain.client import Web3ChainClient
from node.chain.deploy import Deployment
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted, DeploymentFailed
from node.chain.external import (
    DeploymentMismatch,
    check_deployment,
    connect_rpc,
    ensure_deployment,
    fund_account,
    main,
    manifest_path,
    read_manifest,
    write_manifest,
)
from node.chain.merkle import MerkleTree, record_leaf
from node.chain.models import AccessEntry, ConsentGrant
from node.chain.record_ids import new_record_id
from node.consent.typed_data import AccessBasis, ScopeKind, category_hash, full_message
from tests.tcp_proxy import CutProxy

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
CHAIN_SH = REPO_ROOT / "scripts" / "chain.sh"
FUNDS = 10**24  # wei: plenty for any test, far from the dev accounts' 10k ETH


# -- infrastructure ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class HardhatNode:
    """A ``scripts/chain.sh`` node: its port, state directory and URL."""

    port: int
    state_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def extra_env(self) -> dict[str, str]:
        """More ``scripts/chain.sh`` settings (a subclass's chain flavour)."""
        return {}

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """``scripts/chain.sh <command>`` for this node; never raises on the exit status."""
        env = {**os.environ, "EMR_CHAIN_PORT": str(self.port), "EMR_CHAIN_DIR": str(self.state_dir)}
        env.update(self.extra_env())
        return subprocess.run(
            ["bash", str(CHAIN_SH), command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def start(self) -> None:
        done = self.run("start")
        if done.returncode != 0:
            pytest.fail(f"scripts/chain.sh start failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def hardhat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatNode]:
    if shutil.which("npx") is None:
        pytest.fail("npx not found: install Node.js 20 (the project's npm deps come with it)")
    node = HardhatNode(_free_port(), tmp_path_factory.mktemp("chain-state"))
    node.start()
    try:
        yield node
    finally:
        node.run("stop")


@pytest.fixture(scope="session")
def w3(hardhat: HardhatNode) -> Web3:
    return connect_rpc(hardhat.url)


def new_account(w3: Web3 | None = None) -> SignerAccount:
    """A fresh node key behind a SignerAccount, funded on the dev chain if ``w3`` is given."""
    account = SignerAccount(SoftwareSigner(secrets.token_bytes(32)))
    if w3 is not None:
        fund_account(w3, account.address, FUNDS)
    return account


@pytest.fixture(scope="session")
def hospital(w3: Web3) -> SignerAccount:
    """The node whose client most tests use; deployer and first founder."""
    return new_account(w3)


@pytest.fixture(scope="session")
def hospital_b(w3: Web3) -> SignerAccount:
    """A second founder, whose client the outage tests drive through a proxy."""
    return new_account(w3)


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments") / "hardhat-test.json"


@pytest.fixture(scope="session")
def deployment(
    w3: Web3, hospital: SignerAccount, hospital_b: SignerAccount, manifest: Path
) -> Deployment:
    founders = [(hospital.address, "General Hospital"), (hospital_b.address, "Saint Mary")]
    return ensure_deployment(w3, manifest, hospital, founders)


@pytest.fixture(scope="session")
def client(w3: Web3, deployment: Deployment, hospital: SignerAccount) -> Web3ChainClient:
    return Web3ChainClient(w3, deployment, hospital)


@pytest.fixture
def proxy(hardhat: HardhatNode) -> Iterator[CutProxy]:
    p = CutProxy(hardhat.port)
    try:
        yield p
    finally:
        if p._listener is not None:
            p.cut()


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """A raw JSON-RPC call (Hardhat's evm_* / hardhat_* methods)."""
    return w3.manager.request_blocking(method, list(params))  # type: ignore[arg-type]


def random_record(member_id: int = 1) -> tuple[bytes, str, bytes]:
    """(record id, patient address, content hash) of a fresh record of member ``member_id``
    (the first founder, the ``client`` fixture's hospital, is member 1)."""
    return new_record_id(member_id), Account.create().address, secrets.token_bytes(32)


def anchor_records(client: Web3ChainClient, n: int) -> tuple[int, list[tuple[bytes, str, bytes]]]:
    member = client.member_id(client.hospital)
    records = [random_record(member) for _ in range(n)]
    tree = MerkleTree([record_leaf(rid, p, h, None) for rid, p, h in records])
    result = client.anchor_batch(tree.root, [r[0] for r in records], [r[1] for r in records])
    return result.batch_id, records


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# -- scripts/chain.sh and connecting ------------------------------------------------------------
def test_chain_sh_is_idempotent(hardhat: HardhatNode) -> None:
    again = hardhat.run("start")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    status = hardhat.run("status")
    assert status.returncode == 0
    assert "chain id 31337" in status.stdout
    assert (hardhat.state_dir / f"hardhat-{hardhat.port}.pid").is_file()
    assert (hardhat.state_dir / ".gitignore").read_text().strip() == "*"


def test_connect_rpc(w3: Web3, hardhat: HardhatNode) -> None:
    assert w3.eth.chain_id == 31337
    # The dev chain's blocks have short extraData; the PoA middleware must not hurt them.
    assert w3.eth.get_block("latest")["number"] >= 0
    closed = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(ChainUnavailable, match="no EVM JSON-RPC node answers at http"):
        connect_rpc(closed)
    assert time.monotonic() - started < 3  # a few quick retries, not web3's default backoff


class _FakeRpc(BaseHTTPRequestHandler):
    """Answers eth_chainId 1337 and refuses every other method, as a production node
    refuses hardhat_*; any path but / gets a web page, as a misconfigured URL would."""

    authorizations: ClassVar[list[str | None]] = []  # seen by every instance

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.authorizations.append(self.headers.get("Authorization"))
        if self.path != "/":
            payload = b"<html>not here</html>"
        elif body["method"] == "eth_chainId":
            payload = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x539"}).encode()
        else:
            error = {"code": -32601, "message": f"Method {body['method']} not found"}
            payload = json.dumps({"jsonrpc": "2.0", "id": body["id"], "error": error}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_rpc() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRpc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_connect_rpc_rejects_what_is_not_an_evm_node(fake_rpc: str) -> None:
    with pytest.raises(ChainUnavailable, match="does not answer eth_chainId"):
        connect_rpc(fake_rpc + "/wrong-path")
    assert connect_rpc(fake_rpc).eth.chain_id == 1337
    _FakeRpc.authorizations.clear()
    connect_rpc(fake_rpc, headers={"Authorization": "Bearer jwt"})
    assert _FakeRpc.authorizations == ["Bearer jwt"]


def test_connect_rpc_keeps_credentials_out_of_messages() -> None:
    url = f"http://user:secret@127.0.0.1:{_free_port()}/rpc?apikey=hidden"
    with pytest.raises(ChainUnavailable) as raised:
        connect_rpc(url)
    message = str(raised.value)
    assert "127.0.0.1" in message
    assert "secret" not in message and "hidden" not in message


def test_fund_account_is_for_dev_chains_only(w3: Web3, fake_rpc: str) -> None:
    address = Account.create().address
    fund_account(w3, address, 12345)
    assert w3.eth.get_balance(address) == 12345
    fund_account(w3, address, 7)  # sets, does not add
    assert w3.eth.get_balance(address) == 7
    with pytest.raises(ChainError, match="only works on development chains"):
        fund_account(connect_rpc(fake_rpc), address, 1)
    with pytest.raises(ValueError):
        fund_account(w3, "0x1234", 1)


# -- deployment manifests -------------------------------------------------------------------
def test_manifest_is_written_then_reloaded_without_sending(
    w3: Web3, deployment: Deployment, manifest: Path, hospital: SignerAccount
) -> None:
    data = json.loads(manifest.read_text())
    assert data["network"] == "hardhat-test"
    assert data["chain_id"] == 31337
    assert data["deployer"] == hospital.address
    contracts = ("consortium", "record_registry", "consent_registry", "access_log")
    assert len({data[k] for k in contracts}) == 4
    assert set(data["artifact_hashes"]) == {
        "Consortium",
        "RecordRegistry",
        "ConsentRegistry",
        "AccessLog",
    }
    assert read_manifest(manifest) == deployment
    assert Deployment.load(manifest) == deployment  # the plain loader ignores "network"
    block, nonce = w3.eth.block_number, w3.eth.get_transaction_count(hospital.address)
    # Founders and account no longer matter once the manifest exists.
    again = ensure_deployment(w3, manifest, new_account(), [])
    assert again == deployment
    assert (w3.eth.block_number, w3.eth.get_transaction_count(hospital.address)) == (block, nonce)
    assert check_deployment(w3, deployment) == []


def test_manifest_without_network_loads(w3: Web3, deployment: Deployment, tmp_path: Path) -> None:
    # Deployment.save output (the embedded node's deployment.json) is a valid manifest.
    path = tmp_path / "deployment.json"
    deployment.save(path)
    assert "network" not in json.loads(path.read_text())
    assert ensure_deployment(w3, path, new_account(), []) == deployment


def _tampered(deployment: Deployment, **changes: Any) -> Deployment:
    data = json.loads(deployment.to_json())
    data.update(changes)
    return Deployment.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: {"chain_id": 1}, "the chain id is 31337, the manifest's is 1"),
        (
            lambda d: {"access_log": "0x" + "ab" * 20},
            "no contract code at the AccessLog address 0xABaB",
        ),
        (
            lambda d: {"artifact_hashes": {**d.artifact_hashes, "ConsentRegistry": "00" * 32}},
            "ConsentRegistry was deployed from other bytecode than this node ships",
        ),
        (
            lambda d: {
                "artifact_hashes": {k: v for k, v in d.artifact_hashes.items() if k != "AccessLog"}
            },
            "the manifest has no artifact hash for AccessLog",
        ),
        (
            # Real contracts, wrong roles: the RecordRegistry slot holds the Consortium.
            lambda d: {"consortium": d.record_registry, "record_registry": d.consortium},
            "belongs to the Consortium",
        ),
        (lambda d: {"block_number": 10**9}, "before the deployment block 1000000000"),
    ],
    ids=["chain-id", "missing-code", "artifact-hash", "artifact-missing", "wiring", "reset"],
)
def test_mismatching_manifest_is_refused(
    w3: Web3,
    deployment: Deployment,
    tmp_path: Path,
    change: Callable[[Deployment], dict[str, Any]],
    expected: str,
) -> None:
    path = tmp_path / "net.json"
    bad = _tampered(deployment, **change(deployment))
    write_manifest(path, bad, "net")
    block = w3.eth.block_number
    with pytest.raises(DeploymentMismatch) as raised:
        ensure_deployment(w3, path, new_account(), [])
    assert expected in str(raised.value)
    assert str(raised.value).endswith("Redeploy or update the node.")
    assert isinstance(raised.value, ChainError)
    assert raised.value.manifest == path
    assert w3.eth.block_number == block  # nothing was deployed over it
    assert read_manifest(path) == bad  # nor was the manifest replaced


def test_unreadable_manifest(w3: Web3, tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"chain_id": 31337}')
    with pytest.raises(ChainError, match="lacks"):
        ensure_deployment(w3, path, new_account(), [])
    with pytest.raises(ChainError, match="no deployment manifest"):
        read_manifest(tmp_path / "absent.json")


def test_deploy_needs_the_account_among_founders(w3: Web3, tmp_path: Path) -> None:
    account = new_account(w3)
    path = tmp_path / "net.json"
    with pytest.raises(DeploymentFailed, match="must be one of the founders"):
        ensure_deployment(w3, path, account, [(Account.create().address, "Other")])
    assert not path.exists()


def test_deploy_failure_names_the_reason(w3: Web3, tmp_path: Path) -> None:
    account = new_account()  # not funded
    path = tmp_path / "net.json"
    with pytest.raises(DeploymentFailed, match="enough funds"):
        ensure_deployment(w3, path, account, [(account.address, "Poor Hospital")])
    assert not path.exists()


def test_redeploy_replaces_the_manifest(w3: Web3, tmp_path: Path) -> None:
    account = new_account(w3)
    founders = [(account.address, "Dev Hospital")]
    path = tmp_path / "dev.json"
    first = ensure_deployment(w3, path, account, founders, network="dev-chain")
    assert json.loads(path.read_text())["network"] == "dev-chain"
    assert ensure_deployment(w3, path, account, founders) == first
    second = ensure_deployment(w3, path, account, founders, redeploy=True)
    assert second.consortium != first.consortium
    assert read_manifest(path) == second
    with pytest.raises(FileExistsError):  # only redeploy replaces a manifest
        write_manifest(path, first, "dev")
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_manifest_path() -> None:
    assert manifest_path("besu-prod").parts[-3:] == ("contracts", "deployments", "besu-prod.json")
    assert manifest_path("x", "/tmp/m") == Path("/tmp/m/x.json")
    for bad in ("../etc", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            manifest_path(bad)


def test_command_line_deploy_and_check(
    hardhat: HardhatNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    key = secrets.token_bytes(32)
    deployer = SignerAccount(SoftwareSigner(key)).address
    other = Account.create().address
    monkeypatch.setenv("EMR_TEST_DEPLOYER_KEY", "0x" + key.hex())
    path = tmp_path / "cli.json"
    common = ["--rpc-url", hardhat.url, "--network", "cli", "--manifest", str(path)]
    deploy = [*common, "--key-env", "EMR_TEST_DEPLOYER_KEY", "--name", "CLI Hospital"]
    assert main(["deploy", *deploy, "--founder", f"{other}:Other", "--fund-wei", str(FUNDS)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {path}")
    deployment = read_manifest(path)
    assert deployment.deployer == deployer
    members = connect_rpc(hardhat.url).eth.contract(
        address=deployment.consortium,
        abi=[
            {
                "type": "function",
                "name": "members",
                "inputs": [],
                "outputs": [{"type": "address[]", "name": ""}],
                "stateMutability": "view",
            }
        ],
    )
    assert members.functions.members().call() == [deployer, other]
    assert main(["deploy", *deploy]) == 0  # exists: checked, not redeployed
    assert capsys.readouterr().out.startswith(f"checked {path}")
    assert main(["check", *common]) == 0
    write_manifest(path, _tampered(deployment, chain_id=5), "cli", overwrite=True)
    assert main(["check", *common]) == 1
    assert "Redeploy or update the node" in capsys.readouterr().err
    monkeypatch.delenv("EMR_TEST_DEPLOYER_KEY")
    assert main(["deploy", *deploy, "--redeploy"]) == 1
    assert "set EMR_TEST_DEPLOYER_KEY" in capsys.readouterr().err


# -- Web3ChainClient over JSON-RPC ------------------------------------------------------------
def test_anchor_and_verify_with_merkle_proofs(
    client: Web3ChainClient, hospital: SignerAccount
) -> None:
    batch_id, records = anchor_records(client, 5)
    info = client.batch(batch_id)
    assert info is not None
    assert (info.hospital, info.count, info.member_id) == (hospital.address, 5, 1)
    tree = MerkleTree([record_leaf(rid, p, h, None) for rid, p, h in records])
    assert info.root == tree.root
    for i, (rid, patient, content) in enumerate(records):
        assert client.verify_record(batch_id, rid, patient, content, None, tree.proof(i))
    rid, patient, content = records[0]
    assert not client.verify_record(batch_id, rid, patient, b"\x01" * 32, None, tree.proof(0))
    assert not client.verify_record(batch_id + 100, rid, patient, content, None, tree.proof(0))
    assert client.batch(batch_id + 100) is None


def test_consent_grant_relayed_then_replay_refused(client: Web3ChainClient) -> None:
    patient = Account.create()
    clinician = Account.create().address
    record_id = secrets.token_bytes(32)
    labs = category_hash("labs")
    assert client.access_basis(patient.address, clinician, record_id, labs) == AccessBasis.NONE
    domain = client.consent_domain()
    assert domain["chainId"] == 31337
    assert domain["verifyingContract"] == client.deployment.consent_registry
    now = int(time.time())
    grant = ConsentGrant(
        patient=patient.address,
        grantee=clinician,
        scope_kind=ScopeKind.CATEGORY,
        scope=labs,
        expires_at=now + 3600,
        nonce=client.consent_nonce(patient.address),
        deadline=now + 600,
    )
    signature = Account.sign_typed_data(
        patient.key, full_message=full_message("Grant", grant.message(), domain)
    ).signature
    result = client.grant_with_sig(grant, signature)
    assert result.block_number > 0
    assert client.consent_nonce(patient.address) == grant.nonce + 1
    assert (
        client.access_basis(patient.address, clinician, record_id, labs)
        == AccessBasis.CATEGORY_CONSENT
    )
    other = category_hash("imaging")
    assert client.access_basis(patient.address, clinician, record_id, other) == AccessBasis.NONE

    with pytest.raises(ContractReverted) as replayed:
        client.grant_with_sig(grant, signature)
    assert replayed.value.name == "InvalidAccountNonce"
    assert replayed.value.error_args[1] == grant.nonce + 1  # (account, currentNonce)
    forged = ConsentGrant(**{**_fields(grant), "nonce": grant.nonce + 1})
    with pytest.raises(ContractReverted) as bad_sig:
        client.grant_with_sig(forged, signature)
    assert bad_sig.value.name == "ConsentRegistryInvalidSignature"


def _fields(grant: ConsentGrant) -> dict[str, Any]:
    return {name: getattr(grant, name) for name in ConsentGrant.__slots__}


def test_access_log_and_audit_filters(
    w3: Web3, client: Web3ChainClient, hospital: SignerAccount
) -> None:
    start = w3.eth.block_number + 1
    batch_id, records = anchor_records(client, 2)
    (rid_a, patient_a, _), (rid_b, patient_b, _) = records
    doctor, nurse = Account.create().address, Account.create().address
    client.record_accesses(
        [
            AccessEntry(patient_a, rid_a, doctor, True, AccessBasis.RECORD_CONSENT),
            AccessEntry(patient_a, rid_a, nurse, False, AccessBasis.NONE),
            AccessEntry(patient_b, rid_b, doctor, True, AccessBasis.BREAK_GLASS),
        ]
    )

    by_patient = client.audit_events(patient=patient_a)
    assert [e.event for e in by_patient] == ["RecordAnchored", "AccessRecorded", "AccessRecorded"]
    denied = by_patient[2].args
    assert (denied["actor"], denied["granted"], denied["basis"]) == (nurse, False, 0)
    assert denied["hospital"] == hospital.address
    assert by_patient[0].args["batchId"] == batch_id
    assert by_patient[0].timestamp > 0 and by_patient[0].block_number >= start

    by_record = client.audit_events(record_id=rid_b)
    assert [(e.event, e.args["patient"]) for e in by_record] == [
        ("RecordAnchored", patient_b),
        ("AccessRecorded", patient_b),
    ]
    by_actor = client.audit_events(actor=doctor)
    assert [(e.args["patient"], e.args["basis"]) for e in by_actor] == [
        (patient_a, int(AccessBasis.RECORD_CONSENT)),
        (patient_b, int(AccessBasis.BREAK_GLASS)),
    ]
    assert client.audit_events(patient=patient_a, actor=nurse)[0].args["granted"] is False
    # Unfiltered from the batch's block: the batch, its two records, three accesses.
    recent = client.audit_events(from_block=start)
    assert [e.event for e in recent] == [
        "BatchAnchored",
        "RecordAnchored",
        "RecordAnchored",
        "AccessRecorded",
        "AccessRecorded",
        "AccessRecorded",
    ]
    assert client.audit_events(patient=patient_a, to_block=start - 1) == []


def test_reverts_are_decoded_and_send_nothing(
    w3: Web3, client: Web3ChainClient, deployment: Deployment
) -> None:
    outsider = new_account(w3)
    stranger = Web3ChainClient(w3, deployment, outsider)
    assert not stranger.is_member(outsider.address)
    block = w3.eth.block_number
    with pytest.raises(ContractReverted) as raised:
        stranger.anchor_batch(b"\x01" * 32, [b"\x02" * 32], [outsider.address])
    assert raised.value.name == "ConsortiumGatedNotMember"
    assert raised.value.error_args[0].lower() == outsider.address.lower()
    with pytest.raises(ContractReverted) as invalid:
        client.anchor_batch(b"\x00" * 32, [b"\x02" * 32], [outsider.address])
    assert invalid.value.name == "RecordRegistryInvalidBatch"
    assert w3.eth.block_number == block  # refused in simulation: nothing mined
    assert w3.eth.get_transaction_count(outsider.address) == 0
    anchor_records(client, 1)  # the client's nonce survived the refusals


def test_members(
    client: Web3ChainClient, hospital: SignerAccount, hospital_b: SignerAccount
) -> None:
    assert client.members() == [
        (hospital.address, "General Hospital"),
        (hospital_b.address, "Saint Mary"),
    ]
    assert client.is_member(hospital_b.address)


# -- the chain going away -------------------------------------------------------------------
def test_chain_cut_then_back(
    proxy: CutProxy, deployment: Deployment, hospital_b: SignerAccount, w3: Web3
) -> None:
    client = Web3ChainClient(connect_rpc(proxy.url), deployment, hospital_b)
    anchor_records(client, 1)  # the client now holds a local nonce
    nonce = w3.eth.get_transaction_count(hospital_b.address)
    proxy.cut()
    with pytest.raises(ChainUnavailable):
        client.is_member(hospital_b.address)
    with pytest.raises(ChainUnavailable):
        client.audit_events(actor=hospital_b.address)
    with pytest.raises(ChainUnavailable):
        anchor_records(client, 1)
    proxy.restore()
    assert client.is_member(hospital_b.address)
    batch_id, _ = anchor_records(client, 1)
    assert client.batch(batch_id) is not None
    assert w3.eth.get_transaction_count(hospital_b.address) == nonce + 1


def test_send_cut_after_broadcast_recovers_the_nonce(
    proxy: CutProxy, deployment: Deployment, hospital_b: SignerAccount, w3: Web3
) -> None:
    """The transaction reaches the node, then the node vanishes while the client waits for
    the receipt: ChainUnavailable although the transaction will be mined; the client must
    not reuse nor skip a nonce afterwards."""
    client = Web3ChainClient(connect_rpc(proxy.url), deployment, hospital_b)
    anchor_records(client, 1)
    nonce = w3.eth.get_transaction_count(hospital_b.address)
    outcome: list[BaseException | None] = []

    def send() -> None:
        try:
            anchor_records(client, 1)
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    rpc(w3, "evm_setAutomine", False)  # keep the transaction pending
    try:
        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: w3.eth.get_transaction_count(hospital_b.address, "pending") > nonce)
        proxy.cut()
        sender.join(timeout=30)
        assert isinstance(outcome[0], ChainUnavailable)
        rpc(w3, "evm_mine")
    finally:
        rpc(w3, "evm_setAutomine", True)
    assert w3.eth.get_transaction_count(hospital_b.address) == nonce + 1  # it was mined
    proxy.restore()
    _, records = anchor_records(client, 1)
    assert w3.eth.get_transaction_count(hospital_b.address) == nonce + 2
    assert client.audit_events(record_id=records[0][0])[0].args["hospital"] == hospital_b.address


def test_stopped_node(hardhat: HardhatNode, tmp_path: Path) -> None:
    """A real stop (scripts/chain.sh stop) of a second node: reads, sends and connecting
    fail with ChainUnavailable."""
    node = HardhatNode(_free_port(), hardhat.state_dir)
    node.start()
    try:
        w3 = connect_rpc(node.url)
        account = new_account(w3)
        deployment = ensure_deployment(w3, tmp_path / "m.json", account, [(account.address, "H")])
        client = Web3ChainClient(w3, deployment, account)
        anchor_records(client, 1)
    finally:
        stopped = node.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert node.run("status").returncode == 3
    assert node.run("stop").returncode == 0  # idempotent
    with pytest.raises(ChainUnavailable):
        client.batch(1)
    with pytest.raises(ChainUnavailable):
        anchor_records(client, 1)
    with pytest.raises(ChainUnavailable):
        connect_rpc(node.url)
    with pytest.raises(ChainUnavailable):
        ensure_deployment(w3, tmp_path / "m.json", account, [])


# -- numbers ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_throughput(client: Web3ChainClient, capsys: Any) -> None:
    """Sequential sends, a 1,000-record batch and audit queries through Web3ChainClient.
    Prints the numbers (pytest -s); asserts only that nothing is pathologically slow."""
    n = 100
    started = time.perf_counter()
    for _ in range(n):
        anchor_records(client, 1)
    sends_per_s = n / (time.perf_counter() - started)

    big: list[float] = []
    for _ in range(3):
        records = [random_record() for _ in range(1000)]
        tree = MerkleTree([record_leaf(rid, p, h, None) for rid, p, h in records])
        t = time.perf_counter()
        client.anchor_batch(tree.root, [r[0] for r in records], [r[1] for r in records])
        big.append(time.perf_counter() - t)

    patient = records[0][1]
    queries: dict[str, list[float]] = {"patient": [], "record": [], "all": []}
    for _ in range(5):
        for name, kwargs in (
            ("patient", {"patient": patient}),
            ("record", {"record_id": records[0][0]}),
            ("all", {}),
        ):
            t = time.perf_counter()
            events = client.audit_events(**kwargs)
            queries[name].append(time.perf_counter() - t)
            if name == "all":
                total = len(events)
    with capsys.disabled():
        print(
            f"\nhardhat: {sends_per_s:.0f} sequential anchor_batch(1)/s; "
            f"anchor_batch(1000) median {statistics.median(big) * 1000:.0f} ms; "
            + "; ".join(
                f"audit_events({k}) median {statistics.median(v) * 1000:.1f} ms"
                for k, v in queries.items()
            )
            + f" ({total} events on chain)"
        )
    assert sends_per_s > 5
    assert statistics.median(big) < 10
