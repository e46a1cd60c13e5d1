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
from zk.credentials import age_inputs  # noqa: E402
from zk.models import Proof  # noqa: E402
from zk.prover import Groth16Prover, validate_inputs  # noqa: E402
from zk.registry import CircuitSpec, get_circuit  # noqa: E402
from zk.setup import dev_setup  # noqa: E402
from zk.snarkjs import run_snarkjs, snarkjs_fullprove, snarkjs_verify  # noqa: E402
from zk.testing import access_scenario  # noqa: E402

CACHE = REPO / "build" / "bench-zk"
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
        # A nurse in a ragged tree of 1,000 credentials (a depth-10 proof), class: nurses of
        # any member hospital. The circuit always hashes 20 levels, so the tree size does not
        # change the proving time.
        return access_scenario("nurse", others=999, position=517).inputs()
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


# Issue 9's gas targets (gasUsed, the 21,000 intrinsic cost included).
GAS_TARGETS: tuple[tuple[str, str, int], ...] = (
    ("ZkAccessGate", "access (1 proof)", 280_000),
    ("ZkAccessGate", "accessBatch (16 proofs)", 85_000 * 16),
    ("CredentialRegistry", "issueCredential (1st leaf)", 150_000),
    ("CredentialRegistry", "issueCredential (mean of 64)", 150_000),
)


def bench_gas() -> list[tuple[str, str, int, str]]:
    """The ZK rows of scripts/gas_report.py (one implementation of the gas measurement):
    consortium and ZK contracts on eth-tester, real proofs, gasUsed per call."""
    sys.path.insert(0, str(REPO / "scripts"))
    import gas_report

    bench = gas_report.Bench()
    contracts = gas_report._deployments(bench)
    gas_report._zk(bench, contracts["Consortium"], contracts["ConsentRegistry"])
    return bench.zk_rows


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
        _log(f"{name}: gas (scripts/gas_report.py's ZK section, eth-tester)")
        result["gas"] = bench_gas()
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
        out += ["", "| gas (clinician_access, eth-tester) | gasUsed | note |", "|---|---:|---|"]
        out += [f"| {c}.{op} | {used:,} | {note} |" for c, op, used, note in gas]
        out += ["", "| gas target (issue 9) | measured | target | met? |", "|---|---:|---:|---|"]
        by_op = {(c, op): used for c, op, used, _ in gas}
        for contract, op, target in GAS_TARGETS:
            used = by_op.get((contract, op))
            if used is None:
                continue
            per = 16 if "16 proofs" in op else 1
            out.append(
                f"| {contract}.{op}{' per proof' if per > 1 else ''} | {used // per:,} | "
                f"<= {target // per:,} | {'yes' if used <= target else '**no**'} |"
            )
    return "\n".join(out)


# Issue 9's proving targets (clinician_access).
PROVE_TARGET_MS = 300
SNARKJS_SPEEDUP_TARGET = 2.0
VERIFY_TARGET_MS = 2.0
VERIFY_RATE_TARGET = 500


def prove_targets(results: list[dict]) -> str:
    """clinician_access's prove / verify numbers against issue 9's targets."""
    r = next((r for r in results if r["circuit"] == "clinician_access"), None)
    if r is None:
        return ""
    g = r["groth16py"]
    prove = g["prove_with_verify"]["median_ms"]
    verify = g["verify"]["median_ms"]
    rate = g["verifications_per_s_one_core"]
    rows = [
        (
            "prove (witness + prove + verify) median",
            f"{prove:,.0f} ms",
            f"<= {PROVE_TARGET_MS} ms",
            prove <= PROVE_TARGET_MS,
        ),
        (
            "verify median",
            f"{verify:.2f} ms",
            f"<= {VERIFY_TARGET_MS} ms",
            verify <= VERIFY_TARGET_MS,
        ),
        (
            "verifications/s, one core",
            f"{rate:,.0f}",
            f">= {VERIFY_RATE_TARGET}",
            rate >= VERIFY_RATE_TARGET,
        ),
    ]
    if "snarkjs" in r:
        speedup = r["snarkjs"]["warm_fullprove"]["median_ms"] / prove
        rows.append(
            (
                "speed-up over snarkjs warm fullProve",
                f"{speedup:.1f}x",
                f">= {SNARKJS_SPEEDUP_TARGET}x",
                speedup >= SNARKJS_SPEEDUP_TARGET,
            )
        )
    out = ["| clinician_access target | measured | target | met? |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {'yes' if ok else '**no**'} |" for a, b, c, ok in rows]
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
    targets = prove_targets(results)
    if targets:
        print("\n" + targets)
    print(
        f"\n{meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, "
        f"at end {meta['loadavg_end']}; {args.runs} runs ({args.cli_runs} snarkjs CLI calls)"
    )
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "circuits": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
