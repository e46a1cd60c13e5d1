"""Soundness checks for our circuits: mutation of valid inputs, unconstrained ``<--``, circheck.

* ``private_mutations`` / ``mutation_survivors``: starting from inputs that prove, change one
  private input at a time (+1 and -1 mod r, single bit flips) keeping every public input; each
  changed witness must be rejected. ``public_mutation_survivors``: change one public input of a
  valid proof at a time (+-1, every bit flip below r); each must stop verifying.
* ``unconstrained_hints``: every ``x <-- ...`` in our own .circom sources must be followed, in
  the same template, by a ``===`` constraint that mentions ``x`` (circomlib is out of scope).
* ``run_circheck``: the circheck static analyser (PyPI ``circheck``) on a circuit, with our
  ``lib/`` and circomlib copied next to it (it resolves includes relative to the file only and
  needs a deep recursion limit for circomlib's Poseidon constants).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zk.abc import ProverAPI, VerifierAPI
from zk.exceptions import WitnessError
from zk.field import R
from zk.models import Proof
from zk.registry import CIRCOMLIB_DIR, CircuitSpec

DEFAULT_BITS = (0, 1, 3, 4, 31, 32, 35, 36, 39, 40, 63, 64, 127, 252)

# -- mutations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """One changed signal: ``signal`` ("root", "siblings[2]"), ``change`` ("+1", "bit 40")."""

    signal: str
    change: str
    inputs: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.signal} {self.change}"


def value_mutations(value: int, bits: Iterable[int] = DEFAULT_BITS) -> Iterator[tuple[str, int]]:
    """(change, new value): +1 and -1 mod r, then each bit flip that stays below r."""
    yield "+1", (value + 1) % R
    yield "-1", (value - 1) % R
    for bit in bits:
        flipped = value ^ (1 << bit)
        if flipped < R:
            yield f"bit {bit}", flipped


Skip = Callable[[str, int | None, Mapping[str, Any]], bool]


def private_mutations(
    spec: CircuitSpec,
    inputs: Mapping[str, Any],
    *,
    bits: Iterable[int] = DEFAULT_BITS,
    skip: Skip | None = None,
) -> Iterator[Mutation]:
    """Each private input (each array element) changed alone, public inputs untouched.

    ``skip(name, position, inputs)`` leaves out elements a circuit ignores by design (e.g.
    LeanIMT siblings beyond the proof's depth).
    """
    bits = tuple(bits)
    for name, length in spec.signals.items():
        if name in spec.public_inputs:
            continue
        positions: list[int | None] = [None] if length is None else list(range(length))
        for pos in positions:
            if skip is not None and skip(name, pos, inputs):
                continue
            value = inputs[name] if pos is None else inputs[name][pos]
            for change, new in value_mutations(value, bits):
                changed = dict(inputs)
                if pos is None:
                    changed[name] = new
                    label = name
                else:
                    array = list(inputs[name])
                    array[pos] = new
                    changed[name] = array
                    label = f"{name}[{pos}]"
                yield Mutation(label, change, changed)


def mutation_survivors(
    prover: ProverAPI,
    inputs: Mapping[str, Any],
    *,
    bits: Iterable[int] = DEFAULT_BITS,
    skip: Skip | None = None,
) -> tuple[list[str], int]:
    """(labels of private mutations the circuit still accepted, number tried). The unchanged
    inputs must prove first, else the check would pass vacuously."""
    prover.prove(inputs)
    spec = getattr(prover, "spec")  # noqa: B009 - Groth16Prover; ProverAPI has no spec
    survivors, tried = [], 0
    for mutation in private_mutations(spec, inputs, bits=bits, skip=skip):
        tried += 1
        try:
            prover.prove(mutation.inputs)
        except WitnessError:
            continue
        survivors.append(mutation.label)
    return survivors, tried


def public_mutation_survivors(
    verifier: VerifierAPI, proof: Proof, names: Iterable[str] | None = None
) -> tuple[list[str], int]:
    """(labels of public-input changes the proof still verified under, number tried), over
    +-1 and every single bit flip below r of each public input."""
    if not verifier.verify(proof):
        raise ValueError("the original proof does not verify")
    count = len(proof.public_inputs)
    labels = list(names) if names is not None else [f"#{i}" for i in range(count)]
    survivors, tried = [], 0
    for i, value in enumerate(proof.public_inputs):
        for change, new in value_mutations(value, range(R.bit_length())):
            public = list(proof.public_inputs)
            public[i] = new
            tried += 1
            if verifier.verify(Proof(proof.data, tuple(public))):
                survivors.append(f"{labels[i]} {change}")
    return survivors, tried


# -- unconstrained <-- -----------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    signal: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.signal}: {self.message}"


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_TEMPLATE = re.compile(r"\btemplate\s+(\w+)\s*\([^)]*\)\s*\{")
_HINT = re.compile(r"([A-Za-z_]\w*)(?:\s*\[[^\]]*\])*\s*<--")
_HINT_RIGHT = re.compile(r"-->\s*([A-Za-z_]\w*)")


def _blank_comments(text: str) -> str:
    """Comments replaced by spaces (newlines kept), so offsets and line numbers survive."""
    return _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def _template_bodies(text: str) -> Iterator[tuple[str, int, str]]:
    """(template name, offset of its body, body text) for each template."""
    for m in _TEMPLATE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), m.end(), text[m.end() : i - 1]


def unconstrained_hints(path: Path | str) -> list[Finding]:
    """Each ``x <-- ...`` (or ``... --> x``) in ``path`` with no later ``===`` statement of
    the same template mentioning ``x``."""
    path = Path(path)
    text = _blank_comments(path.read_text())
    findings = []
    for template, offset, body in _template_bodies(text):
        statements = [(m.start(), m.group()) for m in re.finditer(r"[^;{}]+", body)]
        for start, stmt in statements:
            hint = _HINT.search(stmt) or _HINT_RIGHT.search(stmt)
            if not hint or "<==" in stmt or "==>" in stmt:
                continue
            name = hint.group(1)
            used = re.compile(rf"\b{re.escape(name)}\b")
            later = [s for st, s in statements if st > start and "===" in s]
            if not any(used.search(s) for s in later):
                line = text.count("\n", 0, offset + start + len(stmt) - len(stmt.lstrip())) + 1
                findings.append(
                    Finding(
                        path.name,
                        line,
                        name,
                        f"assigned with <-- in {template} and never constrained with ===",
                    )
                )
    return findings


def our_sources(circuits_dir: Path | str | None = None) -> list[Path]:
    """Our hand-written .circom files: the circuits and ``lib/`` (not circomlib)."""
    from zk.registry import CIRCUITS_DIR

    root = Path(circuits_dir) if circuits_dir is not None else CIRCUITS_DIR
    return sorted([*root.glob("*.circom"), *(root / "lib").glob("*.circom")])


# -- circheck --------------------------------------------------------------------------------

# Runs circheck's CLI in a thread with a deep stack: circheck lowers the recursion limit to
# 5000 on import, which its parser exceeds on circomlib's Poseidon constants.
_CIRCHECK = r"""
import sys, threading
sys.setrecursionlimit(1_000_000)
sys.setrecursionlimit = lambda n: None
threading.stack_size(1 << 30)
from circheck.cli import main
def run():
    sys.argv = ["circheck", *sys.argv[1:]]
    main()
thread = threading.Thread(target=run)
thread.start()
thread.join()
"""

# Stands in for circomlib's Poseidon when circheck analyses OUR templates: a constrained,
# non-linear function of every input with one output, like the real one. circheck needs
# minutes to parse the real poseidon_constants.circom (2 MB of literals); the real Poseidon is
# circomlib's, out of scope, and covered by the mutation tests.
POSEIDON_STUB = """pragma circom 2.0.0;
template Poseidon(nInputs) {
    signal input inputs[nInputs];
    signal output out;
    signal acc[nInputs + 1];
    acc[0] <== 1;
    for (var i = 0; i < nInputs; i++) {
        acc[i + 1] <== acc[i] * (inputs[i] + i + 1);
    }
    out <== acc[nInputs];
}
"""


@dataclass(frozen=True)
class CircheckFinding:
    """One circheck warning: the template instance, the detector, where, and what."""

    template: str
    detector: str
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.detector}] {self.template}: {self.message}"


@dataclass(frozen=True)
class CircheckReport:
    circuit: str
    findings: tuple[CircheckFinding, ...]

    def in_files(self, names: Iterable[str]) -> list[CircheckFinding]:
        wanted = set(names)
        return [f for f in self.findings if f.file in wanted]

    def outside(self, names: Iterable[str]) -> list[CircheckFinding]:
        wanted = set(names)
        return [f for f in self.findings if f.file not in wanted]


def parse_circheck_report(raw: Mapping[str, Any]) -> list[CircheckFinding]:
    """circheck's JSON ``{template: {detector: {"file:line:col": [messages]}}}``."""
    out = []
    for template, detectors in raw.items():
        for detector, places in dict(detectors).items():
            for place, messages in dict(places).items():
                file, line = str(place), 0
                parts = str(place).rsplit(":", 2)
                if len(parts) == 3 and parts[1].isdigit():
                    file, line = parts[0], int(parts[1])
                for message in messages:
                    out.append(
                        CircheckFinding(
                            str(template), str(detector), Path(file).name, line, message
                        )
                    )
    return out


def run_circheck(
    spec: CircuitSpec, *, stub_poseidon: bool = True, timeout: float = 1800
) -> CircheckReport:
    """Run circheck on ``spec`` in a flat copy of circomlib and our includes (circheck only
    resolves includes next to the file), circomlib's Poseidon replaced by ``POSEIDON_STUB``
    unless ``stub_poseidon`` is False."""
    with tempfile.TemporaryDirectory(prefix="circheck-") as tmp:
        work = Path(tmp)
        for directory in (CIRCOMLIB_DIR, *spec.include_dirs):
            for src in Path(directory).glob("*.circom"):
                shutil.copy(src, work / src.name)
        if stub_poseidon:
            (work / "poseidon.circom").write_text(POSEIDON_STUB)
        main = work / Path(spec.source).name
        shutil.copy(spec.source, main)
        report = work / "report.json"
        proc = subprocess.run(
            [sys.executable, "-c", _CIRCHECK, main.name, "--json", str(report)],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = proc.stdout + proc.stderr
        finished = "Total warnings" in output or "No warnings" in output
        if not finished and ("Analysis failed" in output or not report.exists()):
            tail = [ln for ln in output.splitlines() if "Generating AST" not in ln][-8:]
            raise RuntimeError("circheck failed:\n" + "\n".join(tail))
        raw = json.loads(report.read_text()) if report.exists() else {}
    return CircheckReport(spec.name, tuple(parse_circheck_report(raw)))
