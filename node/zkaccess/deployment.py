"""The ZK contracts of a network: loaded from their manifest and checked against the chain and
the node's verification key, or deployed (by a founding node) on first start."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from eth_account.signers.base import BaseAccount
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from node.chain.exceptions import ChainError
from node.chain.external import DeploymentMismatch
from node.chain.zk_deploy import ZkDeployment, deploy_zk_contracts
from zk.export.solidity import vk_constructor_args

log = logging.getLogger(__name__)


def _vk_words(vk_json: str) -> list[int]:
    alpha, beta, gamma, delta, ic = vk_constructor_args(vk_json)
    words: list[int] = []
    for part in (alpha, beta, gamma, delta, *ic):
        words.extend(int(w) for w in part)
    return words


def check_zk_deployment(w3: Web3, deployment: ZkDeployment, vk_json: str) -> list[str]:
    """Problems with ``deployment`` on this chain: missing code, or a verifier built for
    another verification key. The key lives in the verifier's immutables, i.e. in its
    runtime code, so every key word must appear there."""
    problems = []
    named = {
        name: getattr(deployment, name)
        for name in ("poseidon_t3", "credential_registry", "clinician_verifier", "zk_access_gate")
    }
    named.update(deployment.libraries)
    for name, address in named.items():
        if not w3.eth.get_code(address):
            problems.append(f"no contract code at {name} {address}")
    code = bytes(w3.eth.get_code(deployment.clinician_verifier))
    if code and not all(w.to_bytes(32, "big") in code for w in _vk_words(vk_json)):
        problems.append(
            "the deployed ClinicianAccessVerifier was built for another verification key: "
            "this node's ZK keys differ from the consortium's"
        )
    return problems


def ensure_zk_deployment(
    w3: Web3,
    manifest: Path,
    account: BaseAccount,
    consortium: str,
    consent_registry: str,
    vk_json: str,
    *,
    max_proof_age: int,
    max_clock_skew: int,
    epoch_length: int,
) -> tuple[ZkDeployment, bool]:
    """(deployment, deployed now). Raises ``DeploymentMismatch`` when the manifest does not
    match the chain or this node's keys."""
    if manifest.exists():
        try:
            deployment = ZkDeployment.from_json(manifest.read_text(encoding="utf-8"))
        except OSError as err:
            raise ChainError(f"cannot read {manifest}: {err}") from err
        problems = check_zk_deployment(w3, deployment, vk_json)
        if problems:
            raise DeploymentMismatch(manifest, problems)
        return deployment, False
    signing = Web3(w3.provider, middleware=w3.middleware_onion.middleware)
    signing.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    signing.eth.default_account = account.address
    deployment = deploy_zk_contracts(
        signing,
        consortium,
        consent_registry,
        json.loads(vk_json),
        max_proof_age=max_proof_age,
        max_clock_skew=max_clock_skew,
        epoch_length=epoch_length,
    )
    manifest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".zk-deployment-", suffix=".json", dir=manifest.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(deployment.to_json())
    os.replace(tmp, manifest)
    log.info("deployed the ZK contracts; manifest %s", manifest)
    return deployment, True
