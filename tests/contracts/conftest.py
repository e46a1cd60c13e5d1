"""Fixtures for the contract tests: one in-memory eth-tester chain (py-evm) per session with
the contracts deployed by ``deploy_contracts``; every test runs from a snapshot of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contract_helpers import FOUNDER_NAMES, Chain
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from node.chain.artifacts import load_artifact
from node.chain.deploy import deploy_contracts


@pytest.fixture(scope="session")
def _session_chain() -> Chain:
    tester = EthereumTester(PyEVMBackend())
    w3 = Web3(EthereumTesterProvider(tester))
    accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
    w3.eth.default_account = accounts[0]
    deployment = deploy_contracts(w3, list(zip(accounts[:3], FOUNDER_NAMES, strict=True)))
    return Chain(
        tester=tester,
        w3=w3,
        deployment=deployment,
        consortium=w3.eth.contract(deployment.consortium, abi=load_artifact("Consortium").abi),
        records=w3.eth.contract(
            deployment.record_registry, abi=load_artifact("RecordRegistry").abi
        ),
        consent=w3.eth.contract(
            deployment.consent_registry, abi=load_artifact("ConsentRegistry").abi
        ),
        access_log=w3.eth.contract(deployment.access_log, abi=load_artifact("AccessLog").abi),
        accounts=accounts,
    )


@pytest.fixture
def chain(_session_chain: Chain) -> Iterator[Chain]:
    snapshot = _session_chain.tester.take_snapshot()
    try:
        yield _session_chain
    finally:
        _session_chain.tester.revert_to_snapshot(snapshot)


def _account(label: str) -> LocalAccount:
    return Account.from_key(keccak(text=label))


@pytest.fixture
def patient() -> LocalAccount:
    return _account("patient-1")


@pytest.fixture
def patient2() -> LocalAccount:
    return _account("patient-2")


@pytest.fixture
def clinician() -> LocalAccount:
    return _account("clinician-1")
