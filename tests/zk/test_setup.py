"""Dev setup, key artifacts versioned by circuit hash, and ceremony zkey import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import groth16py
import pytest

from zk.artifacts import MANIFEST, PROVING_KEY, VERIFICATION_KEY, key_dir, load_keys
from zk.compiler import REPO_ROOT, compile_circuit
from zk.credentials import age_inputs
from zk.exceptions import SetupError
from zk.prover import Groth16Prover
from zk.registry import CircuitSpec, get_circuit
from zk.setup import dev_setup, import_ceremony

CUBE = """pragma circom 2.0.0;
template Cube() { signal input y; signal input x; signal x2; x2 <== x * x; y === x2 * x; }
component main {public [y]} = Cube();
"""

# One node process for a whole (tiny, 2^3) ceremony: phase 1 with a contribution (tau = 1
# would give a degenerate key), phase 2 with a contribution, then the verification key.
CEREMONY_JS = """
const snarkjs = require("snarkjs");
const ff = require("ffjavascript");
const fs = require("fs");
async function main() {
  const [r1cs, dir] = process.argv.slice(2);
  const curve = await ff.buildBn128(true);
  await snarkjs.powersOfTau.newAccumulator(curve, 3, dir + "/pot0.ptau");
  await snarkjs.powersOfTau.contribute(dir + "/pot0.ptau", dir + "/pot1.ptau", "a", "e1");
  await snarkjs.powersOfTau.preparePhase2(dir + "/pot1.ptau", dir + "/pot.ptau");
  await snarkjs.zKey.newZKey(r1cs, dir + "/pot.ptau", dir + "/c0.zkey");
  await snarkjs.zKey.contribute(dir + "/c0.zkey", dir + "/c.zkey", "b", "e2");
  const vk = await snarkjs.zKey.exportVerificationKey(dir + "/c.zkey");
  fs.writeFileSync(dir + "/vk.json", JSON.stringify(vk));
  await curve.terminate();
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def age_keys(zk_keys):
    return zk_keys("age_at_least")


def test_dev_setup_writes_versioned_artifacts(age_keys, zk_artifacts_dir):
    spec = get_circuit("age_at_least")
    directory = zk_artifacts_dir / "age_at_least" / spec.circuit_hash[:16]
    assert age_keys.directory == directory
    for name in (PROVING_KEY, VERIFICATION_KEY, MANIFEST):
        assert (directory / name).is_file()
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["circuit"] == "age_at_least"
    assert manifest["circuit_hash"] == spec.circuit_hash
    assert manifest["kind"] == "dev"
    assert manifest["n_public"] == 4
    assert manifest["groth16py"] == groth16py.__version__
    assert manifest["created"].endswith("+00:00")
    # groth16py's embedded circom compiles to the same R1CS size as circom2 --O2.
    assert manifest["constraints"] == compile_circuit(spec).constraints
    vk = json.loads((directory / VERIFICATION_KEY).read_text())
    assert vk["nPublic"] == 4 and len(vk["IC"]) == 5
    assert json.loads(age_keys.verification_key_json) == vk


def test_dev_setup_is_cached_per_process_and_reused_from_disk(age_keys, zk_artifacts_dir):
    spec = get_circuit("age_at_least")
    assert dev_setup(spec, zk_artifacts_dir) is age_keys
    loaded = load_keys(spec, zk_artifacts_dir)
    assert loaded.verification_key_json == age_keys.verification_key_json
    # Loaded keys prove, and the proof verifies under the saved verification key.
    proof = Groth16Prover(loaded).prove(age_inputs(19700101, 3, 20250101, 18, bytes(32)))
    assert Groth16Prover(age_keys).verifier.verify(proof)


def test_load_keys_refuses_keys_of_another_circuit_hash(age_keys, tmp_path):
    spec = get_circuit("age_at_least")
    shutil.copytree(age_keys.directory.parent.parent, tmp_path / "art")
    manifest_path = key_dir(spec, tmp_path / "art") / MANIFEST
    data = json.loads(manifest_path.read_text())
    data["circuit_hash"] = "00" * 32
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(SetupError, match="circuit hash 0000000000000000"):
        load_keys(spec, tmp_path / "art")


def test_changed_circuit_finds_no_keys_and_names_the_stale_ones(age_keys, tmp_path):
    # Same circuit copied elsewhere: content hash, hence keys, are the same.
    src = tmp_path / "age_at_least.circom"
    shutil.copy(get_circuit("age_at_least").source, src)
    spec = get_circuit("age_at_least")
    moved = CircuitSpec(spec.name, src, spec.public_inputs, spec.private_inputs, spec.budget)
    assert moved.circuit_hash == spec.circuit_hash
    load_keys(moved, age_keys.directory.parent.parent)
    # Any edit (here a comment) gives a new hash, and the old keys are refused.
    src.write_text(src.read_text() + "\n// edited\n")
    assert moved.circuit_hash != spec.circuit_hash
    with pytest.raises(SetupError, match=spec.circuit_hash[:16]):
        load_keys(moved, age_keys.directory.parent.parent)


def test_missing_keys_raise_setup_error(tmp_path):
    with pytest.raises(SetupError, match="no keys for age_at_least"):
        load_keys(get_circuit("age_at_least"), tmp_path)


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory):
    """A real snarkjs ceremony for a 2-constraint circuit (about 2 s)."""
    work = tmp_path_factory.mktemp("ceremony")
    (work / "cube.circom").write_text(CUBE)
    spec = CircuitSpec("cube", work / "cube.circom", ("y",), ("x",), budget=10)
    report = compile_circuit(spec, work / "build")
    (work / "ceremony.js").write_text(CEREMONY_JS)
    env = {**os.environ, "NODE_PATH": str(REPO_ROOT / "node_modules")}
    subprocess.run(
        ["node", str(work / "ceremony.js"), report.r1cs_path, str(work)],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    return spec, work / "c.zkey", work / "vk.json"


def test_import_ceremony_proves_under_the_ceremony_verification_key(ceremony, tmp_path):
    spec, zkey, vk_json = ceremony
    keys = import_ceremony(spec, zkey, vk_json, tmp_path)
    assert keys.manifest.kind == "ceremony"
    assert keys.manifest.zkey_sha256 and len(keys.manifest.zkey_sha256) == 64
    assert keys.manifest.constraints == 2
    proof = Groth16Prover(keys).prove({"y": 27, "x": 3})
    ceremony_verifier = groth16py.Verifier(groth16py.VerifyingKey.from_snarkjs_file(str(vk_json)))
    assert ceremony_verifier.verify(proof.data, [27])
    assert not ceremony_verifier.verify(proof.data, [28])
    # Reloaded from disk it is still the ceremony key; a dev setup never overwrites it.
    assert load_keys(spec, tmp_path).manifest.kind == "ceremony"
    assert dev_setup(spec, tmp_path).manifest.kind == "ceremony"


def test_import_ceremony_refuses_a_verification_key_of_other_keys(ceremony, tmp_path):
    spec, zkey, _ = ceremony
    dev = dev_setup(spec, tmp_path / "dev")
    other_vk = Path(dev.directory) / VERIFICATION_KEY
    with pytest.raises(SetupError, match="does not belong to the zkey"):
        import_ceremony(spec, zkey, other_vk, tmp_path / "imported")


def test_import_ceremony_refuses_unreadable_files(ceremony, tmp_path):
    spec, _, vk_json = ceremony
    bogus = tmp_path / "bogus.zkey"
    bogus.write_bytes(b"not a zkey")
    with pytest.raises(SetupError):
        import_ceremony(spec, bogus, vk_json, tmp_path / "a")
    with pytest.raises(SetupError):
        import_ceremony(spec, tmp_path / "missing.zkey", vk_json, tmp_path / "b")
