"""Deploy the four consortium contracts and record where they are.

``deploy_contracts`` sends from ``w3.eth.default_account``: the caller arranges signing
(an unlocked eth-tester / Hardhat account, or a signing middleware). The resulting
``Deployment`` is saved as JSON next to the node's data and reloaded on restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3Exception

from node.chain.artifacts import DEPLOYED_CONTRACTS, Artifact, load_artifact
from node.chain.exceptions import ChainError, ChainUnavailable, DeploymentFailed
from node.chain.reverts import as_reverted

RECEIPT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Deployment:
    """Addresses of a deployed contract set.

    ``block_number`` is the block of the first deployment (the Consortium): scanning events
    from it sees everything, founders' ``MemberAdmitted`` included. ``artifact_hashes`` maps
    each deployed contract name to the sha256 (hex) of its creation bytecode, so a node can
    tell that its packaged artifacts match the deployed set.
    """

    chain_id: int
    consortium: str
    record_registry: str
    consent_registry: str
    access_log: str
    block_number: int
    deployer: str
    artifact_hashes: dict[str, str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, s: str) -> Deployment:
        """Parse ``to_json`` output. Raises ``ChainError`` when fields are missing or wrong."""
        try:
            data = json.loads(s)
        except ValueError as err:
            raise ChainError("deployment manifest is not valid JSON") from err
        if not isinstance(data, dict):
            raise ChainError("deployment manifest must be a JSON object")
        expected = {f.name for f in fields(cls)}
        missing = expected - data.keys()
        if missing:
            raise ChainError(f"deployment manifest lacks {sorted(missing)}")
        try:
            hashes = data["artifact_hashes"]
            if not isinstance(hashes, dict):
                raise TypeError("artifact_hashes")
            return cls(
                chain_id=_int(data["chain_id"]),
                consortium=_address(data["consortium"]),
                record_registry=_address(data["record_registry"]),
                consent_registry=_address(data["consent_registry"]),
                access_log=_address(data["access_log"]),
                block_number=_int(data["block_number"]),
                deployer=_address(data["deployer"]),
                artifact_hashes={str(k): str(v) for k, v in hashes.items()},
            )
        except (TypeError, ValueError) as err:
            raise ChainError(f"invalid deployment manifest ({err})") from err

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temporary file + rename)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".deployment-", suffix=".json", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Deployment:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def artifact_hash(artifact: Artifact) -> str:
    """sha256 (hex) of an artifact's creation bytecode."""
    return hashlib.sha256(bytes.fromhex(artifact.bytecode.removeprefix("0x"))).hexdigest()


def deploy_contracts(w3: Web3, founders: Sequence[tuple[str, str]]) -> Deployment:
    """Deploy Consortium(founders) then RecordRegistry, ConsentRegistry and AccessLog pointing
    at it, from ``w3.eth.default_account``, waiting for each receipt.

    ``founders`` are (address, hospital name) pairs. Raises ``ContractReverted`` when a
    constructor reverts (e.g. ``ConsortiumInvalidFounders``), ``ChainUnavailable`` when the
    node cannot be reached and ``DeploymentFailed`` for anything else.
    """
    if not founders:
        raise DeploymentFailed("the consortium needs at least one founder")
    account = w3.eth.default_account
    if not account or not is_address(account):
        raise DeploymentFailed("w3.eth.default_account is not set")
    deployer = to_checksum_address(account)
    addresses = [to_checksum_address(a) for a, _name in founders]
    names = [name for _a, name in founders]
    try:
        chain_id = int(w3.eth.chain_id)
    except (ConnectionError, OSError) as err:
        raise ChainUnavailable("the chain node cannot be reached") from err

    consortium, block_number = deploy_contract(w3, deployer, "Consortium", addresses, names)
    record_registry, _ = deploy_contract(w3, deployer, "RecordRegistry", consortium)
    consent_registry, _ = deploy_contract(w3, deployer, "ConsentRegistry", consortium)
    access_log, _ = deploy_contract(w3, deployer, "AccessLog", consortium)
    return Deployment(
        chain_id=chain_id,
        consortium=consortium,
        record_registry=record_registry,
        consent_registry=consent_registry,
        access_log=access_log,
        block_number=block_number,
        deployer=deployer,
        artifact_hashes={name: artifact_hash(load_artifact(name)) for name in DEPLOYED_CONTRACTS},
    )


def deploy_contract(
    w3: Web3,
    deployer: str,
    name: str,
    *args: Any,
    bytecode: str | None = None,
    gas: int | None = None,
) -> tuple[str, int]:
    """Deploy one packaged contract; return (address, block number).

    ``bytecode`` overrides the artifact's (once libraries are linked into it). ``gas`` skips
    the estimate: py-evm estimates by binary search, re-running a large creation ~20 times.
    """
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=bytecode or artifact.bytecode)
    tx: dict[str, Any] = {"from": deployer}
    if gas is not None:
        tx["gas"] = gas
    try:
        tx_hash = factory.constructor(*args).transact(tx)  # type: ignore[arg-type]
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT)
    except (ConnectionError, OSError) as err:
        raise ChainUnavailable("the chain node cannot be reached") from err
    except Exception as err:
        reverted = as_reverted(err)
        if reverted is not None:
            raise reverted from err
        if isinstance(err, Web3Exception | ValueError | TypeError):
            raise DeploymentFailed(f"deploying {name} failed: {type(err).__name__}") from err
        raise
    address = receipt.get("contractAddress")
    if receipt.get("status") != 1 or not address:
        raise DeploymentFailed(f"deploying {name} failed (status {receipt.get('status')})")
    return to_checksum_address(address), int(receipt["blockNumber"])


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _address(value: Any) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"not an address: {value!r}")
    return to_checksum_address(value)
