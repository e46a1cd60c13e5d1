"""The RecoverableWalletFactory of a network: loaded from its manifest and checked against
the chain, or deployed on first start (the factory's constructor deploys the locked
implementation). Every node of a consortium should share one factory (pass its manifest in
``wallets.deployment_manifest``): a node recognises only its factory's wallets."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account.signers.base import BaseAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from node.chain.artifacts import load_artifact
from node.chain.deploy import _address, _int, deploy_contract
from node.chain.exceptions import ChainError, ChainUnavailable
from node.chain.external import DeploymentMismatch

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
FACTORY = "RecoverableWalletFactory"
# Creation gas with headroom over docs/gas.md (the factory deploys the implementation).
_DEPLOY_GAS = 2_500_000


@dataclass(frozen=True)
class WalletDeployment:
    """Where the factory and its implementation are; ``block_number``: the factory's block."""

    factory: str
    implementation: str
    block_number: int
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, s: str) -> WalletDeployment:
        """Parse ``to_json`` output. Raises ``ChainError`` when fields are missing or wrong."""
        try:
            data = json.loads(s)
            if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
                raise ValueError("not a version 1 wallet manifest")
            return cls(
                factory=_address(data["factory"]),
                implementation=_address(data["implementation"]),
                block_number=_int(data["block_number"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ChainError(f"invalid wallet factory manifest ({err})") from err


def check_wallet_deployment(w3: Web3, deployment: WalletDeployment) -> list[str]:
    """Problems with ``deployment`` on this chain (missing code, another implementation)."""
    try:
        if not w3.eth.get_code(deployment.factory):
            return [f"no contract code at the wallet factory {deployment.factory}"]
        factory = w3.eth.contract(address=deployment.factory, abi=load_artifact(FACTORY).abi)
        implementation = to_checksum_address(factory.functions.implementation().call())
    except (ConnectionError, OSError) as err:
        raise ChainUnavailable("the chain node cannot be reached") from err
    if implementation != deployment.implementation:
        return [f"the wallet factory's implementation is {implementation}, not the manifest's"]
    return []


def ensure_wallet_deployment(
    w3: Web3, manifest: Path, account: BaseAccount, *, deploy: bool = True
) -> tuple[WalletDeployment, bool]:
    """(deployment, deployed now). Without ``deploy`` (an API process) the manifest must
    exist. Raises ``DeploymentMismatch`` when it does not match the chain."""
    if manifest.exists():
        try:
            deployment = WalletDeployment.from_json(manifest.read_text(encoding="utf-8"))
        except OSError as err:
            raise ChainError(f"cannot read {manifest}: {err}") from err
        problems = check_wallet_deployment(w3, deployment)
        if problems:
            raise DeploymentMismatch(manifest, problems)
        return deployment, False
    if not deploy:
        raise ChainError(f"no wallet factory manifest at {manifest}: start the worker role first")
    signing = Web3(w3.provider, middleware=w3.middleware_onion.middleware)
    signing.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    signing.eth.default_account = account.address
    factory, block_number = deploy_contract(signing, account.address, FACTORY, gas=_DEPLOY_GAS)
    contract = w3.eth.contract(address=factory, abi=load_artifact(FACTORY).abi)
    implementation = to_checksum_address(contract.functions.implementation().call())
    deployment = WalletDeployment(factory, implementation, block_number)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".wallets-", suffix=".json", dir=manifest.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(deployment.to_json())
    os.replace(tmp, manifest)
    log.info("deployed the wallet factory %s; manifest %s", factory, manifest)
    return deployment, True
