"""deploy_contracts / Deployment (node/chain/deploy.py) and the artifact loader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from contract_helpers import FOUNDER_NAMES, Chain
from web3 import EthereumTesterProvider, Web3

from node.chain.artifacts import load_artifact
from node.chain.deploy import Deployment, deploy_contracts
from node.chain.exceptions import ChainError, ContractReverted, DeploymentFailed


def test_deployment_wires_the_registries(chain: Chain) -> None:
    dep = chain.deployment
    assert dep.chain_id == chain.w3.eth.chain_id
    assert dep.deployer == chain.a
    for contract in (chain.records, chain.consent, chain.access_log):
        assert contract.functions.consortium().call() == dep.consortium
    assert chain.consortium.functions.members().call() == [chain.a, chain.b, chain.c]
    assert chain.consortium.functions.memberName(chain.c).call() == FOUNDER_NAMES[2]
    # block_number is the Consortium's block: scanning from it sees the founders' admission
    receipts = chain.consortium.events.MemberAdmitted.get_logs(from_block=dep.block_number)
    assert len(receipts) == 3
    for name in ("Consortium", "RecordRegistry", "ConsentRegistry", "AccessLog"):
        code = bytes.fromhex(load_artifact(name).bytecode[2:])
        assert dep.artifact_hashes[name] == hashlib.sha256(code).hexdigest()


def test_deployment_json_round_trip(chain: Chain, tmp_path: Path) -> None:
    dep = chain.deployment
    assert Deployment.from_json(dep.to_json()) == dep
    path = tmp_path / "sub" / "deployment.json"
    dep.save(path)
    assert Deployment.load(path) == dep
    assert path.read_text() == dep.to_json()
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"chain_id": 1}', '{"chain_id": "x"}'],
)
def test_deployment_from_json_rejects_garbage(chain: Chain, text: str) -> None:
    with pytest.raises(ChainError):
        Deployment.from_json(text)
    broken = chain.deployment.to_json().replace(chain.deployment.consortium, "0x1234")
    with pytest.raises(ChainError):
        Deployment.from_json(broken)


def test_deploy_errors(chain: Chain) -> None:
    with pytest.raises(DeploymentFailed):
        deploy_contracts(chain.w3, [])
    w3 = Web3(EthereumTesterProvider(chain.tester))  # no default account
    with pytest.raises(DeploymentFailed):
        deploy_contracts(w3, [(chain.a, "A")])
    with pytest.raises(ContractReverted) as info:
        deploy_contracts(chain.w3, [(chain.a, "A"), (chain.a, "A again")])
    assert info.value.name == "ConsortiumInvalidFounders"
    assert str(info.value) == "ConsortiumInvalidFounders()"
    assert isinstance(info.value, ChainError)


def test_load_artifact() -> None:
    art = load_artifact("ConsentRegistry")
    assert art.name == "ConsentRegistry"
    assert art.bytecode.startswith("0x") and len(art.bytecode) > 1000
    assert any(item.get("name") == "grantWithSig" for item in art.abi)
    assert load_artifact("ConsentRegistry") is art  # cached
    for bad in ("Nope", "../deploy", ""):
        with pytest.raises(ChainError):
            load_artifact(bad)
