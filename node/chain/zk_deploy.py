"""Deploy the zero-knowledge access contracts (v2) next to an existing consortium.

Order: PoseidonT3 (library) -> any further library the registry links (e.g. zk-kit's
LeanIMT when it is not inlined) -> CredentialRegistry(consortium) with the libraries linked
-> ClinicianAccessVerifier (the node's verification key as constructor arguments, so no solc
is needed) -> ZkAccessGate(consortium, registry, consentRegistry, verifier, maxProofAge,
maxClockSkew, epochLength). Transactions are sent from ``w3.eth.default_account``, as
``node.chain.deploy`` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

from eth_utils import is_address, to_checksum_address
from web3 import Web3

from node.chain.artifacts import ARTIFACTS_FOLDER, ARTIFACTS_PACKAGE, load_artifact
from node.chain.deploy import _address, _int, deploy_contract
from node.chain.exceptions import ChainError, DeploymentFailed

#: The verifier contract of the ``clinician_access`` circuit.
CLINICIAN_VERIFIER = "ClinicianAccessVerifier"
#: Public inputs of clinician_access v2: root, context, scope, epochNullifier.
CLINICIAN_PUBLIC_INPUTS = 4
MANIFEST_VERSION = 2


@dataclass(frozen=True)
class ZkDeployment:
    """Addresses of the ZK contracts (v2); ``block_number`` is the first deployment's
    block (scan CredentialIssued / ZkAccessGranted events from it). ``libraries`` holds
    every linked library but PoseidonT3 (name -> address)."""

    poseidon_t3: str
    credential_registry: str
    clinician_verifier: str
    zk_access_gate: str
    block_number: int
    libraries: dict[str, str] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, s: str) -> ZkDeployment:
        """Parse ``to_json`` output. Raises ``ChainError`` when fields are missing or wrong."""
        try:
            data = json.loads(s)
        except ValueError as err:
            raise ChainError("ZK deployment manifest is not valid JSON") from err
        if not isinstance(data, dict):
            raise ChainError("ZK deployment manifest must be a JSON object")
        if data.get("version") != MANIFEST_VERSION:
            raise ChainError(
                "the ZK deployment manifest is from v1 (credential commitments chosen by the "
                "clinician): deploy the v2 contracts and issue the credentials again "
                "(docs/zk.md, migration)"
            )
        missing = {f.name for f in fields(cls)} - data.keys()
        if missing:
            raise ChainError(f"ZK deployment manifest lacks {sorted(missing)}")
        try:
            libraries = data["libraries"]
            if not isinstance(libraries, dict):
                raise TypeError("libraries must be an object")
            return cls(
                poseidon_t3=_address(data["poseidon_t3"]),
                credential_registry=_address(data["credential_registry"]),
                clinician_verifier=_address(data["clinician_verifier"]),
                zk_access_gate=_address(data["zk_access_gate"]),
                block_number=_int(data["block_number"]),
                libraries={str(k): _address(v) for k, v in libraries.items()},
            )
        except (TypeError, ValueError) as err:
            raise ChainError(f"invalid ZK deployment manifest ({err})") from err


def link_references(name: str) -> dict[str, dict[str, list[dict[str, int]]]]:
    """The artifact's ``linkReferences`` (source -> library -> byte ranges); {} if none."""
    folder = resources.files(ARTIFACTS_PACKAGE).joinpath(ARTIFACTS_FOLDER)
    try:
        data = json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ChainError(f"unreadable artifact for contract {name!r}") from err
    refs = data.get("linkReferences", {})
    if not isinstance(refs, dict):
        raise ChainError(f"malformed linkReferences in artifact {name!r}")
    return refs


def link_bytecode(name: str, libraries: Mapping[str, str]) -> str:
    """Creation bytecode of ``name`` with each library placeholder replaced by the address
    given in ``libraries`` (library name -> address). Raises ``DeploymentFailed`` if a
    referenced library has no address."""
    hexcode = load_artifact(name).bytecode.removeprefix("0x")
    for _source, libs in link_references(name).items():
        for lib, ranges in libs.items():
            if lib not in libraries:
                raise DeploymentFailed(f"{name} needs library {lib}")
            address = to_checksum_address(libraries[lib])[2:].lower()
            for r in ranges:
                start, length = 2 * int(r["start"]), 2 * int(r["length"])
                if length != 40:
                    raise ChainError(f"malformed linkReferences in artifact {name!r}")
                hexcode = hexcode[:start] + address + hexcode[start + length :]
    if "__" in hexcode:
        raise DeploymentFailed(f"{name} has unlinked library placeholders")
    return "0x" + hexcode


def deploy_zk_contracts(
    w3: Web3,
    consortium_address: str,
    consent_registry_address: str,
    clinician_vk_json: Mapping[str, Any] | str,
    *,
    max_proof_age: int = 3600,
    max_clock_skew: int = 900,
    epoch_length: int = 86400,
) -> ZkDeployment:
    """Deploy PoseidonT3 (and any other library the registry links), CredentialRegistry,
    ClinicianAccessVerifier (with the key ``clinician_vk_json``, snarkjs
    ``verification_key.json``, 4 public inputs) and ZkAccessGate for the consortium at
    ``consortium_address`` and its ConsentRegistry.

    Raises ``DeploymentFailed`` for a bad key or account, ``ContractReverted`` when a
    constructor reverts and ``ChainUnavailable`` when the node cannot be reached.
    """
    from zk.exceptions import ZKError
    from zk.export.solidity import vk_constructor_args

    account = w3.eth.default_account
    if not account or not is_address(account):
        raise DeploymentFailed("w3.eth.default_account is not set")
    if not is_address(consortium_address) or not is_address(consent_registry_address):
        raise DeploymentFailed("invalid consortium or consent registry address")
    deployer = to_checksum_address(account)
    consortium = to_checksum_address(consortium_address)
    consents = to_checksum_address(consent_registry_address)
    try:
        alpha, beta, gamma, delta, ic = vk_constructor_args(clinician_vk_json)
    except ZKError as err:
        raise DeploymentFailed(f"unusable clinician verification key ({err})") from err
    if len(ic) != CLINICIAN_PUBLIC_INPUTS + 1:
        raise DeploymentFailed(
            f"the clinician verification key must have {CLINICIAN_PUBLIC_INPUTS} public inputs"
        )

    poseidon, block_number = _deploy(w3, deployer, "PoseidonT3")
    libraries = {"PoseidonT3": poseidon}
    registry = _deploy_linked(w3, deployer, "CredentialRegistry", libraries, consortium)
    verifier, _ = _deploy(w3, deployer, CLINICIAN_VERIFIER, alpha, beta, gamma, delta, ic)
    gate, _ = _deploy(
        w3,
        deployer,
        "ZkAccessGate",
        consortium,
        registry,
        consents,
        verifier,
        max_proof_age,
        max_clock_skew,
        epoch_length,
    )
    return ZkDeployment(
        poseidon_t3=poseidon,
        credential_registry=registry,
        clinician_verifier=verifier,
        zk_access_gate=gate,
        block_number=block_number,
        libraries={k: v for k, v in libraries.items() if k != "PoseidonT3"},
    )


def _deploy_linked(
    w3: Web3, deployer: str, name: str, libraries: dict[str, str], *args: Any
) -> str:
    """Deploy ``name`` after every library its bytecode links (recursively), recording each
    library's address in ``libraries``."""
    for _source, libs in link_references(name).items():
        for lib in libs:
            if lib not in libraries:
                libraries[lib] = _deploy_linked(w3, deployer, lib, libraries)
    bytecode = link_bytecode(name, libraries) if link_references(name) else None
    address, _ = _deploy(w3, deployer, name, *args, bytecode=bytecode)
    return address


# Creation gas with headroom over docs/gas.md: py-evm estimates by binary search,
# re-running a 3.6M-gas creation ~20 times. Others (a linked LeanIMT library) estimate.
_DEPLOY_GAS = {
    "PoseidonT3": 5_000_000,  # 3.93M (generated by zk/export/poseidon_solidity.py)
    "CredentialRegistry": 3_000_000,
    CLINICIAN_VERIFIER: 1_000_000,
    "ZkAccessGate": 2_000_000,
}


def _deploy(
    w3: Web3, deployer: str, name: str, *args: Any, bytecode: str | None = None
) -> tuple[str, int]:
    return deploy_contract(w3, deployer, name, *args, bytecode=bytecode, gas=_DEPLOY_GAS.get(name))
