"""The ZK contracts' manifest (v2): a restarted node checks it against the chain and its own
verification key, and refuses a v1 manifest with a pointer to the migration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.chain.exceptions import ChainError
from node.chain.external import DeploymentMismatch
from node.chain.zk_deploy import ZkDeployment
from node.wiring import build_node
from tests.node.conftest import make_settings, start_node


def test_restart_checks_the_zk_manifest(tmp_path: Path) -> None:
    data = tmp_path / "node"
    rn = start_node(data)
    manifest = data / "zk-deployment.json"
    try:
        deployment = ZkDeployment.from_json(manifest.read_text())
        assert deployment.version == 2
        assert deployment.zk_access_gate == rn.node.zk.gate.gate_address
        assert rn.node.zk.gate.epoch_length() == 86400
    finally:
        rn.stop()
        rn.node.stop()
    original = manifest.read_text()

    # A verifier that does not carry this node's verification key.
    data_json = json.loads(original)
    data_json["clinician_verifier"] = data_json["zk_access_gate"]
    manifest.write_text(json.dumps(data_json))
    with pytest.raises(DeploymentMismatch, match="another verification key"):
        build_node(make_settings(data))

    # A v1 manifest (no version): deploy v2 and issue the credentials again.
    v1 = json.loads(original)
    del v1["version"], v1["libraries"]
    manifest.write_text(json.dumps(v1))
    with pytest.raises(ChainError, match="v1"):
        build_node(make_settings(data))

    manifest.write_text(original)
    again = start_node(data)
    try:
        assert again.node.zk.gate.gate_address == deployment.zk_access_gate
    finally:
        again.stop()
        again.node.stop()
