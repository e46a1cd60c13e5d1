"""Compiled contracts (ABI + creation bytecode) shipped with the node.

The JSON files in ``node/chain/artifacts/`` are generated from ``contracts/`` by
``npm run compile`` (Hardhat, then ``scripts/export_artifacts.js``) and committed;
``tests/contracts/test_artifacts.py`` fails when they drift from the sources.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from node.chain.exceptions import ChainError

ARTIFACTS_PACKAGE = "node.chain"
ARTIFACTS_FOLDER = "artifacts"

#: Contracts the node deploys, in deployment order.
DEPLOYED_CONTRACTS: tuple[str, ...] = (
    "Consortium",
    "RecordRegistry",
    "ConsentRegistry",
    "AccessLog",
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: ``abi`` as in the Solidity ABI JSON, ``bytecode`` the 0x-hex
    creation code."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Load the packaged artifact of contract ``name`` (e.g. ``"ConsentRegistry"``); cached.

    Raises ``ChainError`` if there is no such artifact or it is malformed.
    """
    if not _NAME.match(name):
        raise ChainError(f"invalid contract name {name!r}")
    folder = resources.files(ARTIFACTS_PACKAGE).joinpath(ARTIFACTS_FOLDER)
    resource = folder.joinpath(f"{name}.json")
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ChainError(f"no artifact for contract {name!r}: run `npm run compile`") from err
    except (OSError, ValueError) as err:
        raise ChainError(f"unreadable artifact for contract {name!r}") from err
    abi = data.get("abi")
    bytecode = data.get("bytecode")
    if (
        data.get("contractName") != name
        or not isinstance(abi, list)
        or not isinstance(bytecode, str)
        or not bytecode.startswith("0x")
    ):
        raise ChainError(f"malformed artifact for contract {name!r}")
    return Artifact(name=name, abi=abi, bytecode=bytecode)
