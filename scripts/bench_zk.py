"""Benchmark of the zero-knowledge toolkit: ``python scripts/bench_zk.py [--runs 10]``.

For each registered circuit, in one run: constraints and wires (circom2 compile), groth16py
dev setup / prove / verify times and verifications per second on one core, snarkjs fullprove
and verify on the same circuit (CLI calls, which include Node.js start-up, and one warm node
process, the fair comparison), and with ``--gas`` the gas of the on-chain verifier, a gated
access, batched accesses and credential registration on an in-memory eth-tester chain.

The snarkjs zkey needs a phase-1 ptau (2^13 for clinician_access, ~2.5 min to make): it is
cached under build/bench-zk/ and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import groth16py  # noqa: E402

from zk.compiler import compile_circuit  # noqa: E402
from zk.credentials import Credential, age_inputs, clinician_access_inputs  # noqa: E402
from zk.merkle import CredentialTree  # noqa: E402
from zk.models import Proof  # noqa: E402
from zk.prover import Groth16Prover, validate_inputs  # noqa: E402
from zk.registry import CircuitSpec, get_circuit  # noqa: E402
from zk.setup import dev_setup  # noqa: E402
from zk.snarkjs import run_snarkjs, snarkjs_fullprove, snarkjs_verify  # noqa: E402
from zk.testing import access_scenario  # noqa: E402

CACHE = REPO / "build" / "bench-zk"
INTRINSIC_GAS = 21_000
TX_GAS = 5_000_000
BATCH_SIZES = (1, 4, 16)
NOW = 1_750_000_000
SIGNAL = bytes(range(32, 64))

# One warm node process: fullProve and verify ``runs`` times each (after one warm-up).
NODE_BENCH = r"""
// node -e puts the arguments after "--" at process.argv[1...].
const [snarkjsDir, wasm, zkey, vkPath, inputPath, runs] = process.argv.slice(1);
const snarkjs = require(snarkjsDir);
const fs = require("fs");
const vk = JSON.parse(fs.readFileSync(vkPath));
const input = JSON.parse(fs.readFileSync(inputPath));
(async () => {
  let { proof, publicSignals } = await snarkjs.groth16.fullProve(input, wasm, zkey);
  if (!(await snarkjs.groth16.verify(vk, publicSignals, proof))) throw new Error("bad proof");
  const prove = [], verify = [];
  for (let i = 0; i < Number(runs); i++) {
    let t = process.hrtime.bigint();
    ({ proof, publicSignals } = await snarkjs.groth16.fullProve(input, wasm, zkey));
    prove.push(Number(process.hrtime.bigint() - t) / 1e6);
    t = process.hrtime.bigint();
    const ok = await snarkjs.groth16.verify(vk, publicSignals, proof);
    verify.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (!ok) throw new Error("bad proof");
  }
  console.log(JSON.stringify({ prove_ms: prove, verify_ms: verify }));
  process.exit(0);
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


# -- helpers ---------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, milliseconds)."""
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000


def _series(fn: Callable[[], Any], runs: int) -> list[float]:
    return [_timed(fn)[1] for _ in range(runs)]


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 2),
        "p90_ms": round(_p90(values), 2),
        "min_ms": round(min(values), 2),
        "runs": len(values),
    }


def _log(msg: str) -> None:
    print(f"[bench_zk] {msg}", file=sys.stderr, flush=True)


def valid_inputs(name: str) -> dict[str, Any]:
    if name == "clinician_access":
        return access_scenario("nurse", others=3).inputs()
    if name == "age_at_least":
        return age_inputs(19800615, 123456789, 20250615, 18, SIGNAL)
    raise SystemExit(f"no benchmark inputs for circuit {name!r}")


# -- groth16py -------------------------------------------------------------------------------


def bench_groth16py(spec: CircuitSpec, inputs: dict[str, Any], runs: int, tmp: Path) -> dict:
    keys, setup_ms = _timed(lambda: dev_setup(spec, tmp / "keys", reuse=False))
    prover = Groth16Prover(keys)
    proof = prover.prove(inputs)  # warm-up, and a proof for the verify timings
    checked = validate_inputs(spec, inputs)
    prove_full = _series(lambda: prover.prove(inputs), runs)
    prove_raw = _series(lambda: groth16py.prove(keys.proving_key, checked), runs)
    verifier = prover.verifier
    assert verifier.verify(proof)
    verify = _series(lambda: verifier.verify(proof), max(runs, 50))
    per_s = verifications_per_second(verifier, proof)
    return {
        "setup_ms": round(setup_ms, 1),
        "prove_with_verify": _stats(prove_full),
        "prove": _stats(prove_raw),
        "verify": _stats(verify),
        "verifications_per_s_one_core": per_s,
        "keys": keys,
        "proof": proof,
    }


def verifications_per_second(verifier: Any, proof: Proof, seconds: float = 2.0) -> float:
    """Loop verify for ~``seconds`` pinned to one CPU (restores the affinity after)."""
    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if saved:
        os.sched_setaffinity(0, {min(saved)})
    try:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            if not verifier.verify(proof):
                raise RuntimeError("proof stopped verifying")
            count += 1
        return round(count / (time.perf_counter() - start), 1)
    finally:
        if saved:
            os.sched_setaffinity(0, saved)


# -- snarkjs ---------------------------------------------------------------------------------


def _ptau(power: int) -> Path:
    path = CACHE / f"pot{power}.ptau"
    if not path.exists():
        from zk.ceremony import powers_of_tau

        _log(f"building a 2^{power} ptau (cached at {path}; minutes)")
        powers_of_tau(path, power, entropy=b"bench-zk")
    return path


def snarkjs_keys(spec: CircuitSpec, r1cs: Path, constraints: int) -> tuple[Path, Path, float]:
    """A snarkjs zkey + verification key for the circuit (cached by circuit hash); returns
    (zkey, vk json, setup ms or 0 when cached)."""
    folder = CACHE / spec.name / spec.circuit_hash[:16]
    zkey, vk = folder / "circuit.zkey", folder / "verification_key.json"
    if zkey.exists() and vk.exists():
        return zkey, vk, 0.0
    folder.mkdir(parents=True, exist_ok=True)
    power = max(8, (constraints + spec.n_public + 1).bit_length())
    ptau = _ptau(13 if power <= 13 else power)
    start = time.perf_counter()
    run_snarkjs("groth16", "setup", r1cs, ptau, folder / "tmp.zkey", timeout=900)
    run_snarkjs("zkey", "export", "verificationkey", folder / "tmp.zkey", vk)
    os.replace(folder / "tmp.zkey", zkey)
    return zkey, vk, (time.perf_counter() - start) * 1000


def bench_snarkjs(
    spec: CircuitSpec, report: Any, inputs: dict[str, Any], runs: int, cli_runs: int, tmp: Path
) -> dict:
    zkey, vk_path, setup_ms = snarkjs_keys(spec, Path(report.r1cs_path), report.constraints)
    wasm = Path(report.wasm_path)
    vk_json = vk_path.read_text()
    proofs: list[Proof] = []

    def prove() -> None:
        proofs.append(snarkjs_fullprove(wasm, zkey, inputs))

    cli_prove = _series(prove, cli_runs)
    cli_verify = _series(lambda: snarkjs_verify(vk_json, proofs[-1]) or _fail(), cli_runs)
    # The same proof checked by groth16py: the two toolchains agree on encodings.
    expected = tuple(inputs[n] for n in spec.public_inputs)
    if proofs[-1].public_inputs != expected:
        raise RuntimeError("snarkjs public signals differ from the spec's")
    input_path = tmp / f"{spec.name}-input.json"
    input_path.write_text(json.dumps({k: _str(v) for k, v in inputs.items()}))
    done = subprocess.run(
        [
            "node",
            "-e",
            NODE_BENCH,
            "--",
            str(REPO / "node_modules" / "snarkjs"),
            str(wasm),
            str(zkey),
            str(vk_path),
            str(input_path),
            str(runs),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"warm snarkjs benchmark failed: {done.stderr.strip()[-300:]}")
    warm = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "zkey_setup_ms": round(setup_ms, 1) if setup_ms else None,
        "cli_fullprove": _stats(cli_prove),
        "cli_verify": _stats(cli_verify),
        "warm_fullprove": _stats(warm["prove_ms"]),
        "warm_verify": _stats(warm["verify_ms"]),
        "snarkjs_proof": proofs[-1],
    }


def _fail() -> None:
    raise RuntimeError("snarkjs rejected its own proof")


def _str(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, list) else str(value)


# -- gas -------------------------------------------------------------------------------------


def bench_gas(keys: Any) -> dict:
    """Deploy the consortium and the ZK contracts on eth-tester; gasUsed of the ZK calls."""
    from eth_tester import EthereumTester, PyEVMBackend
    from eth_utils import keccak
    from web3 import EthereumTesterProvider, Web3

    from node.chain.artifacts import load_artifact
    from node.chain.deploy import deploy_contracts
    from node.chain.zk_deploy import deploy_zk_contracts

    w3 = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
    w3.eth.default_account = accounts[0]
    founders = ["Alpha Hospital", "Beta Clinic", "Gamma Medical Center"]
    deployment = deploy_contracts(w3, list(zip(accounts[:3], founders, strict=True)))
    dep = deploy_zk_contracts(w3, deployment.consortium, keys.verification_key_json)
    registry = w3.eth.contract(dep.credential_registry, abi=load_artifact("CredentialRegistry").abi)
    gate = w3.eth.contract(dep.zk_access_gate, abi=load_artifact("ZkAccessGate").abi)
    verifier = w3.eth.contract(
        dep.clinician_verifier, abi=load_artifact("ClinicianAccessVerifier").abi
    )
    member = accounts[0]

    def send(fn: Any, gas: int = TX_GAS) -> int:
        receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": member, "gas": gas}))
        if receipt["status"] != 1:
            raise RuntimeError("benchmark transaction failed")
        return int(receipt["gasUsed"])

    out: dict[str, Any] = {}
    tree = CredentialTree()
    cred = Credential.generate(int(member, 16), "nurse", NOW * 2)
    # addCredential: the first insert and two more (cost depends on the tree level work).
    singles = []
    others = [Credential.generate(int(member, 16), "physician", NOW * 2) for _ in range(2)]
    for c in [cred.commitment, *(o.commitment for o in others)]:
        singles.append(send(registry.functions.addCredential(c)))
        tree.insert(c)
    out["addCredential"] = singles
    batch = [
        Credential.generate(int(member, 16), "pharmacist", NOW * 2).commitment for _ in range(16)
    ]
    used = send(registry.functions.addCredentials(batch), gas=25_000_000)
    tree.insert_many(batch)
    out["addCredentials_16_per_credential"] = round(used / 16)
    if registry.functions.root().call() != tree.root:
        raise RuntimeError("the on-chain credential root differs from zk.merkle's")

    category = keccak(text="radiology")
    out["setCategoryPolicy"] = send(gate.functions.setCategoryPolicy(category, 1 << cred.role))
    prover = Groth16Prover(keys)
    path, root = tree.path(tree.index_of(cred.commitment)), tree.root
    counter = iter(range(10**6))

    def signed() -> tuple[tuple, list[int]]:
        i = next(counter)
        record_id, signal = keccak(text=f"record-{i}"), keccak(text=f"x25519-{i}")
        now = int(w3.eth.get_block("latest")["timestamp"])
        inputs = clinician_access_inputs(cred, path, root, 1 << cred.role, now, record_id, signal)
        proof = prover.prove(inputs)
        request = (record_id, category, root, now, signal, inputs["nullifierHash"])
        return request, list(proof.words)

    request, words = signed()
    inputs6 = gate.functions.publicInputs(request).call()
    out["verifyProof_tx"] = send(verifier.functions.verifyProof(words, inputs6))
    if not verifier.functions.verifyProof(words, inputs6).call({"gas": TX_GAS}):
        raise RuntimeError("the on-chain verifier rejected a valid proof")
    out["access_single"] = send(gate.functions.access(request, words))
    for k in BATCH_SIZES:
        pairs = [signed() for _ in range(k)]
        used = send(
            gate.functions.accessBatch([p[0] for p in pairs], [p[1] for p in pairs]),
            gas=20_000_000,
        )
        out[f"accessBatch_{k}"] = used
        out[f"accessBatch_{k}_per_proof"] = round(used / k)
    return out


# -- main ------------------------------------------------------------------------------------


def bench_circuit(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    spec = get_circuit(name)
    _log(f"{name}: compile")
    report = compile_circuit(spec)
    inputs = valid_inputs(name)
    _log(f"{name}: groth16py")
    g = bench_groth16py(spec, inputs, args.runs, tmp)
    result: dict[str, Any] = {
        "circuit": name,
        "constraints": report.constraints,
        "wires": report.wires,
        "public_inputs": spec.n_public,
        "groth16py": {k: v for k, v in g.items() if k not in ("keys", "proof")},
    }
    if args.snarkjs:
        _log(f"{name}: snarkjs")
        s = bench_snarkjs(spec, report, inputs, args.runs, args.cli_runs, tmp)
        # Cross-check: groth16py verifies the snarkjs proof only with the same keys, so
        # check it with snarkjs's own verification key through groth16py.
        from zk.verifier import Groth16Verifier

        vk_path = CACHE / spec.name / spec.circuit_hash[:16] / "verification_key.json"
        cross = Groth16Verifier.from_json(vk_path.read_text()).verify(s["snarkjs_proof"])
        result["snarkjs"] = {k: v for k, v in s.items() if k != "snarkjs_proof"}
        result["snarkjs"]["groth16py_verifies_snarkjs_proof"] = cross
    if args.gas and name == "clinician_access":
        _log(f"{name}: gas (eth-tester, 22 proofs)")
        result["gas"] = bench_gas(g["keys"])
    return result


def _fmt(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:,.2f} ms"


def table(results: list[dict]) -> str:
    names = [r["circuit"] for r in results]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, get: Callable[[dict], str]) -> None:
        cells = []
        for r in results:
            try:
                cells.append(get(r))
            except (KeyError, TypeError):
                cells.append("-")
        rows.append((label, cells))

    row("constraints / wires", lambda r: f"{r['constraints']:,} / {r['wires']:,}")
    row("groth16py dev setup", lambda r: _fmt(r["groth16py"]["setup_ms"]))
    for key, label in (
        ("prove", "groth16py prove (groth16py.prove)"),
        ("prove_with_verify", "groth16py Groth16Prover.prove (+ verify)"),
    ):
        row(
            f"{label} median / p90",
            lambda r, k=key: (
                f"{_fmt(r['groth16py'][k]['median_ms'])} / {_fmt(r['groth16py'][k]['p90_ms'])}"
            ),
        )
    row("groth16py verify median", lambda r: _fmt(r["groth16py"]["verify"]["median_ms"]))
    row(
        "groth16py verifications/s (1 core)",
        lambda r: f"{r['groth16py']['verifications_per_s_one_core']:,.0f}",
    )
    for key, label in (
        ("warm_fullprove", "snarkjs fullProve, warm node, median / p90"),
        ("warm_verify", "snarkjs verify, warm node, median / p90"),
        ("cli_fullprove", "snarkjs CLI groth16 fullprove median / p90"),
        ("cli_verify", "snarkjs CLI groth16 verify median / p90"),
    ):
        row(
            label,
            lambda r, k=key: (
                f"{_fmt(r['snarkjs'][k]['median_ms'])} / {_fmt(r['snarkjs'][k]['p90_ms'])}"
            ),
        )
    row(
        "groth16py verifies the snarkjs proof",
        lambda r: "yes" if r["snarkjs"]["groth16py_verifies_snarkjs_proof"] else "NO",
    )
    out = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    out += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    gas = next((r["gas"] for r in results if "gas" in r), None)
    if gas:
        out += [
            "",
            "| gas (clinician_access, eth-tester) | gasUsed | minus 21,000 |",
            "|---|---|---|",
        ]

        def g(label: str, used: int) -> None:
            out.append(f"| {label} | {used:,} | {used - INTRINSIC_GAS:,} |")

        g("ClinicianAccessVerifier.verifyProof (as a tx)", gas["verifyProof_tx"])
        g("ZkAccessGate.access (one proof)", gas["access_single"])
        for k in BATCH_SIZES:
            out.append(
                f"| ZkAccessGate.accessBatch k = {k}: total / per proof | "
                f"{gas[f'accessBatch_{k}']:,} / {gas[f'accessBatch_{k}_per_proof']:,} | "
                f"{gas[f'accessBatch_{k}'] - INTRINSIC_GAS:,} / "
                f"{round((gas[f'accessBatch_{k}'] - INTRINSIC_GAS) / k):,} |"
            )
        for i, used in enumerate(gas["addCredential"]):
            g(f"CredentialRegistry.addCredential (leaf {i})", used)
        out.append(
            f"| CredentialRegistry.addCredentials(16), per credential | "
            f"{gas['addCredentials_16_per_credential']:,} | - |"
        )
        g("ZkAccessGate.setCategoryPolicy", gas["setCategoryPolicy"])
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--circuits", default="clinician_access,age_at_least")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per measurement")
    parser.add_argument(
        "--cli-runs", type=int, default=3, help="timed snarkjs CLI calls (each ~2 s start-up)"
    )
    parser.add_argument("--gas", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--snarkjs", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.runs < 1 or args.cli_runs < 1:
        parser.error("--runs and --cli-runs must be at least 1")

    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-zk-") as tmp:
        for name in [n.strip() for n in args.circuits.split(",") if n.strip()]:
            results.append(bench_circuit(name, args, Path(tmp)))
    meta = {
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "runs": args.runs,
        "cli_runs": args.cli_runs,
        "groth16py": groth16py.__version__,
    }
    print(table(results))
    print(
        f"\n{meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, "
        f"at end {meta['loadavg_end']}; {args.runs} runs ({args.cli_runs} snarkjs CLI calls)"
    )
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "circuits": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
