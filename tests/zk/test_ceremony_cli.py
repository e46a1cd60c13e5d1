"""A ceremony for a registered circuit run through `emr-node zk ceremony ...`, then its keys
imported into groth16py: the circuit compiled by circom2 (npm) for snarkjs and the one
groth16py compiles for witnesses must agree, or no proof would verify."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from node.cli.main import app
from zk.artifacts import load_keys
from zk.credentials import age_inputs
from zk.prover import Groth16Prover
from zk.reference import ReferenceVerifier
from zk.registry import get_circuit
from zk.snarkjs import snarkjs_verify

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_ceremony_keys_prove_age_at_least(tmp_path: Path) -> None:
    ptau, cdir, keys = tmp_path / "pot9.ptau", tmp_path / "ceremony", tmp_path / "keys"
    _ok("zk", "ceremony", "ptau", str(ptau), "--power", "9")
    _ok("zk", "ceremony", "init", "age_at_least", "--ptau", str(ptau), "--dir", str(cdir))
    _ok("zk", "ceremony", "contribute", "--dir", str(cdir), "--name", "St Mary")
    _ok("zk", "ceremony", "contribute", "--dir", str(cdir), "--name", "General")
    out = _ok("zk", "ceremony", "finalize", "--dir", str(cdir), "--beacon", "ab" * 32)
    assert "EMR_ZK__KEYS=ceremony" in out
    report = json.loads(_ok("zk", "ceremony", "verify", "--dir", str(cdir), "--latest-only"))
    assert report["ok"] and [s["name"] for s in report["steps"]][1:3] == ["St Mary", "General"]
    _ok("zk", "ceremony", "import", "age_at_least", "--dir", str(cdir), "--keys-dir", str(keys))

    pair = load_keys(get_circuit("age_at_least"), keys)
    assert pair.manifest.kind == "ceremony"
    proof = Groth16Prover(pair).prove(age_inputs(20000229, 77, 20180301, 18, b"\x01" * 32))
    assert snarkjs_verify(pair.verification_key_json, proof)
    assert ReferenceVerifier(pair.verification_key_json).verify(proof)

    # A tampered contribution is reported and the command fails.
    zkey = cdir / "circuit_0001.zkey"
    data = bytearray(zkey.read_bytes())
    data[len(data) // 2] ^= 1
    zkey.write_bytes(bytes(data))
    result = runner.invoke(app, ["zk", "ceremony", "verify", "--dir", str(cdir)])
    assert result.exit_code == 1
