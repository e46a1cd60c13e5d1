"""The committed node/chain/artifacts/*.json must equal a fresh Hardhat compile of contracts/.

Needs Node.js with the project's node_modules (``npm ci``). Compiles into a temporary
directory (EMR_HARDHAT_ARTIFACTS / EMR_HARDHAT_CACHE, read by hardhat.config.js), so the
working tree is not touched. Fix a failure with ``npm run compile``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from node.chain.artifacts import load_artifact

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "node" / "chain" / "artifacts"
EXPORTED = (
    "Consortium",
    "RecordRegistry",
    "ConsentRegistry",
    "AccessLog",
    "ERC1271WalletMock",
    "CallTargetMock",
    "PoseidonT3",
    "CredentialRegistry",
    "ZkAccessGate",
    "ClinicianAccessVerifier",
    "AgeAtLeastVerifier",
    "RecoverableWallet",
    "RecoverableWalletFactory",
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npx = shutil.which("npx")
    node = shutil.which("node")
    if npx is None or node is None:
        pytest.fail(
            "npx/node not found: install Node.js 20 and run `npm ci` "
            "to check the contract artifacts"
        )
    if not (ROOT / "node_modules" / "hardhat").is_dir():
        pytest.fail("node_modules/hardhat missing: run `npm ci` in the repository root first")
    tmp = tmp_path_factory.mktemp("hardhat")
    env = {
        **os.environ,
        "EMR_HARDHAT_ARTIFACTS": str(tmp / "artifacts"),
        "EMR_HARDHAT_CACHE": str(tmp / "cache"),
        "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
    }
    steps = [
        [npx, "--no-install", "hardhat", "compile", "--force", "--quiet"],
        [node, "scripts/export_artifacts.js", str(tmp / "artifacts"), str(tmp / "out")],
    ]
    for cmd in steps:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(cmd[:4])}` failed:\n{done.stdout}\n{done.stderr}")
    return tmp / "out"


def test_exported_set(fresh: Path) -> None:
    assert sorted(p.stem for p in COMMITTED.glob("*.json")) == sorted(EXPORTED)
    assert sorted(p.stem for p in fresh.glob("*.json")) == sorted(EXPORTED)


@pytest.mark.parametrize("name", EXPORTED)
def test_committed_artifact_matches_sources(fresh: Path, name: str) -> None:
    committed = json.loads((COMMITTED / f"{name}.json").read_text())
    compiled = json.loads((fresh / f"{name}.json").read_text())
    hint = "contracts/ and node/chain/artifacts/ disagree: run `npm run compile`"
    assert committed["abi"] == compiled["abi"], f"{name} ABI: {hint}"
    assert committed["bytecode"] == compiled["bytecode"], f"{name} bytecode: {hint}"
    assert committed["sourceName"] == compiled["sourceName"]
    # byte-identical files: the export is deterministic
    assert (COMMITTED / f"{name}.json").read_bytes() == (fresh / f"{name}.json").read_bytes()
    # and the packaged loader serves the same thing
    loaded = load_artifact(name)
    assert (loaded.abi, loaded.bytecode) == (compiled["abi"], compiled["bytecode"])
