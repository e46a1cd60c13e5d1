"""Compile a circuit with circom2 (``--O2 --r1cs --sym --wasm``) and report what it costs.

The report gives the totals from the ``.r1cs`` header and a per-component table:

* wires: each surviving wire (``.sym`` wire index >= 0) belongs to the top-level component of
  its first label, i.e. the one that declares it first (``main.leaf.h.x`` -> ``leaf``; the main
  template's own signals -> ``main``);
* constraints: each constraint is counted for the top-level component owning its highest-index
  wire. circom numbers intermediate wires in creation order, so the newest wire in a constraint
  is the one the constraint defines, and its owner is the component that wrote it.

Outputs are cached under ``<build_dir>/<name>/<circuit_hash[:16]>/``: a changed source or
include gets a new directory, an unchanged one compiles once.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zk.exceptions import BudgetExceeded, CircuitError
from zk.registry import CircuitSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "zk"
CIRCOM2 = REPO_ROOT / "node_modules" / ".bin" / "circom2"
COMPILE_FLAGS = ("--O2", "--r1cs", "--sym", "--wasm")
REPORT_FILE = "report.json"
MAIN = "main"


@dataclass(frozen=True)
class ComponentCost:
    """Constraints and wires attributed to one top-level component of the main template."""

    component: str
    constraints: int
    wires: int


@dataclass(frozen=True)
class CompileReport:
    """What circom produced for one circuit (totals from the .r1cs header)."""

    circuit: str
    circuit_hash: str
    constraints: int
    wires: int
    public_outputs: int
    public_inputs: int
    private_inputs: int
    labels: int
    components: tuple[ComponentCost, ...] = field(default_factory=tuple)
    r1cs_path: str = ""
    sym_path: str = ""
    wasm_path: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CompileReport:
        comps = tuple(ComponentCost(**c) for c in data.get("components", ()))
        return cls(**{**data, "components": comps})

    def table(self) -> str:
        """A fixed-width table of the per-component costs, largest first."""
        rows = [f"{'component':<20} {'constraints':>11} {'wires':>7}"]
        for c in sorted(self.components, key=lambda c: -c.constraints):
            rows.append(f"{c.component:<20} {c.constraints:>11} {c.wires:>7}")
        rows.append(f"{'total':<20} {self.constraints:>11} {self.wires:>7}")
        return "\n".join(rows)


@dataclass(frozen=True)
class R1csHeader:
    field_size: int
    prime: int
    n_wires: int
    n_pub_out: int
    n_pub_in: int
    n_prv_in: int
    n_labels: int
    n_constraints: int


def _sections(data: bytes) -> dict[int, tuple[int, int]]:
    if data[:4] != b"r1cs":
        raise CircuitError("not an r1cs file")
    (n_sections,) = struct.unpack_from("<I", data, 8)
    pos, out = 12, {}
    for _ in range(n_sections):
        kind, size = struct.unpack_from("<IQ", data, pos)
        pos += 12
        out[kind] = (pos, size)
        pos += size
    return out


def parse_r1cs(data: bytes) -> tuple[R1csHeader, list[list[int]]]:
    """The header and, per constraint, the wire ids it touches (A, B and C together)."""
    try:
        sections = _sections(data)
        pos, _ = sections[1]
        (fs,) = struct.unpack_from("<I", data, pos)
        prime = int.from_bytes(data[pos + 4 : pos + 4 + fs], "little")
        pos += 4 + fs
        n_wires, n_out, n_pub, n_prv = struct.unpack_from("<IIII", data, pos)
        (n_labels,) = struct.unpack_from("<Q", data, pos + 16)
        (n_constraints,) = struct.unpack_from("<I", data, pos + 24)
        header = R1csHeader(fs, prime, n_wires, n_out, n_pub, n_prv, n_labels, n_constraints)
        pos, _ = sections[2]
        constraints: list[list[int]] = []
        for _ in range(n_constraints):
            wires: list[int] = []
            for _lc in range(3):
                (n_terms,) = struct.unpack_from("<I", data, pos)
                pos += 4
                for _t in range(n_terms):
                    wires.append(struct.unpack_from("<I", data, pos)[0])
                    pos += 4 + fs
            constraints.append(wires)
    except (KeyError, struct.error) as exc:
        raise CircuitError("truncated or malformed r1cs file") from exc
    return header, constraints


def parse_sym(text: str) -> dict[int, str]:
    """Wire id -> top-level component owning it (the first label naming the wire wins)."""
    owners: dict[int, str] = {}
    for line in text.splitlines():
        parts = line.split(",", 3)
        if len(parts) != 4:
            continue
        wire, name = int(parts[1]), parts[3]
        if wire < 0 or wire in owners:
            continue
        segments = name.split(".")
        # "main.x" -> main's own signal; "main.comp.x" / "main.comp[3].x" -> "comp".
        owner = segments[1].split("[")[0] if len(segments) > 2 else MAIN
        owners[wire] = owner
    return owners


def attribute(constraints: list[list[int]], owners: dict[int, str]) -> tuple[ComponentCost, ...]:
    counts: Counter[str] = Counter()
    for wires in constraints:
        top = max((w for w in wires if w != 0), default=0)
        counts[owners.get(top, MAIN)] += 1
    wire_counts = Counter(owners.values())
    names = sorted(set(counts) | set(wire_counts))
    return tuple(ComponentCost(n, counts[n], wire_counts[n]) for n in names)


def out_dir(spec: CircuitSpec, build_dir: Path | str = DEFAULT_BUILD_DIR) -> Path:
    return Path(build_dir) / spec.name / spec.circuit_hash[:16]


def _run_circom(spec: CircuitSpec, dest: Path) -> None:
    if not CIRCOM2.exists():
        raise CircuitError(f"circom2 not found at {CIRCOM2} (run npm install)")
    source = Path(spec.source).resolve()
    includes = [Path(d).resolve() for d in spec.include_dirs]
    # circom2 is WASI: it can only open paths under its working directory.
    cwd = Path(os.path.commonpath([source, dest.resolve(), *includes]))
    args = [str(CIRCOM2), str(source), *COMPILE_FLAGS, "-o", str(dest.resolve())]
    for d in includes:
        args += ["-l", str(d)]
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CircuitError(f"circom2 failed to run for {spec.name}") from exc
    if proc.returncode != 0 or "Everything went okay" not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        raise CircuitError(f"circom2 could not compile {spec.name}:\n" + "\n".join(tail))


def compile_circuit(
    spec: CircuitSpec, build_dir: Path | str = DEFAULT_BUILD_DIR, *, force: bool = False
) -> CompileReport:
    """Compile ``spec`` (cached by circuit hash) and return its report."""
    dest = out_dir(spec, build_dir)
    report_path = dest / REPORT_FILE
    if report_path.exists() and not force:
        try:
            return CompileReport.from_json(json.loads(report_path.read_text()))
        except (ValueError, TypeError):
            pass  # a damaged cache entry is rebuilt below
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _run_circom(spec, dest)
    stem = Path(spec.source).stem
    r1cs, sym = dest / f"{stem}.r1cs", dest / f"{stem}.sym"
    header, constraints = parse_r1cs(r1cs.read_bytes())
    if header.n_pub_in != spec.n_public or header.n_pub_out != 0:
        raise CircuitError(
            f"{spec.name}: compiled circuit has {header.n_pub_out} public outputs and "
            f"{header.n_pub_in} public inputs; the spec lists {spec.n_public} public inputs"
        )
    report = CompileReport(
        circuit=spec.name,
        circuit_hash=spec.circuit_hash,
        constraints=header.n_constraints,
        wires=header.n_wires,
        public_outputs=header.n_pub_out,
        public_inputs=header.n_pub_in,
        private_inputs=header.n_prv_in,
        labels=header.n_labels,
        components=attribute(constraints, parse_sym(sym.read_text())),
        r1cs_path=str(r1cs),
        sym_path=str(sym),
        wasm_path=str(dest / f"{stem}_js" / f"{stem}.wasm"),
    )
    report_path.write_text(json.dumps(report.to_json(), indent=2))
    return report


def check_budget(report: CompileReport, spec: CircuitSpec) -> CompileReport:
    """Return ``report`` if it fits ``spec.budget``, else raise ``BudgetExceeded``."""
    if report.constraints > spec.budget:
        raise BudgetExceeded(
            f"circuit {spec.name} has {report.constraints} constraints, "
            f"over its budget of {spec.budget} by {report.constraints - spec.budget}"
        )
    return report
