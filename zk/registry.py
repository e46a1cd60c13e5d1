"""The circuit registry: which circuits exist, their public inputs in order, their constraint
budget, and the content hash that versions every artifact built from them.

``zk/circuits/circuits.json`` lists the hand-written circuits; the policy compiler builds
``CircuitSpec`` objects for generated ones. A circuit's hash covers its source and every file it
includes (our ``lib/`` templates and the circomlib files), so changing any template, or
upgrading circomlib, gives new keys instead of silently reusing stale ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import groth16py

from zk.exceptions import CircuitError

CIRCUITS_DIR = Path(__file__).resolve().parent / "circuits"
LIB_DIR = CIRCUITS_DIR / "lib"
REGISTRY_FILE = CIRCUITS_DIR / "circuits.json"
# circomlib as vendored by groth16py (identical to npm circomlib 2.0.5): one copy serves the
# hash, the circom2 compile and groth16py's in-process compile.
CIRCOMLIB_DIR = Path(groth16py.circomlib_path(2))
CIRCOMLIB_VERSION = "2.0.5"
# Everything that changes the compiled R1CS besides the sources goes into the hash domain.
HASH_DOMAIN = f"emr-zk-circuit/v1 circom2 --O2 circomlib-{CIRCOMLIB_VERSION}".encode()

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIGNAL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([1-9][0-9]*)\])?$")
_INCLUDE = re.compile(r'\binclude\s+"([^"]+)"\s*;')
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def default_include_dirs() -> tuple[Path, ...]:
    return (LIB_DIR, CIRCOMLIB_DIR)


def parse_signal(decl: str) -> tuple[str, int | None]:
    """``"pathElements[20]"`` -> ``("pathElements", 20)``; ``"secret"`` -> ``("secret", None)``."""
    m = _SIGNAL.match(decl)
    if not m:
        raise CircuitError(f"bad signal declaration {decl!r} (want name or name[N])")
    return m.group(1), int(m.group(2)) if m.group(2) else None


@dataclass(frozen=True)
class CircuitSpec:
    """One circuit: its main source, its inputs and its constraint budget.

    ``public_inputs`` are in the order the verifier takes them (the template's declaration
    order); ``private_inputs`` are declarations like ``"pathIndices[20]"``.
    """

    name: str
    source: Path
    public_inputs: tuple[str, ...]
    private_inputs: tuple[str, ...]
    budget: int
    description: str = ""
    include_dirs: tuple[Path, ...] = field(default_factory=default_include_dirs)

    def __post_init__(self) -> None:
        if not _IDENT.match(self.name):
            raise CircuitError(f"bad circuit name {self.name!r}")
        if not self.public_inputs:
            raise CircuitError(f"circuit {self.name} has no public inputs")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise CircuitError(f"circuit {self.name}: budget must be a positive integer")
        names = [*self.public_inputs, *(parse_signal(d)[0] for d in self.private_inputs)]
        for n in self.public_inputs:
            if not _IDENT.match(n):
                raise CircuitError(f"circuit {self.name}: public inputs are scalars, got {n!r}")
        if len(set(names)) != len(names):
            raise CircuitError(f"circuit {self.name}: duplicate input signal")

    @property
    def n_public(self) -> int:
        return len(self.public_inputs)

    @property
    def signals(self) -> dict[str, int | None]:
        """Every input signal -> array length (None for a scalar), public ones first."""
        out: dict[str, int | None] = dict.fromkeys(self.public_inputs)
        out.update(parse_signal(d) for d in self.private_inputs)
        return out

    @property
    def link_libraries(self) -> list[str]:
        return [str(d) for d in self.include_dirs]

    def files(self) -> list[Path]:
        """The source and every file it includes, transitively, in circom's resolution order."""
        return list(_walk_includes(Path(self.source).resolve(), self.include_dirs, set()))

    @property
    def circuit_hash(self) -> str:
        """sha256 (hex) over the hash domain and the contents of ``files()``, in order.

        Contents only, not paths: the same circuit built from another checkout keeps its keys.
        Memoised while no file involved changes (size or mtime).
        """
        cached = _HASHES.get(self)
        if cached is not None and _stats(cached[0]) == cached[1]:
            return cached[2]
        files = self.files()
        stats = _stats(files)
        h = hashlib.sha256(HASH_DOMAIN)
        for path in files:
            data = path.read_bytes()
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
        digest = h.hexdigest()
        _HASHES[self] = (files, stats, digest)
        return digest


_HASHES: dict[CircuitSpec, tuple[list[Path], tuple[tuple[int, int], ...], str]] = {}


def _stats(files: list[Path]) -> tuple[tuple[int, int], ...] | None:
    try:
        return tuple((s.st_mtime_ns, s.st_size) for s in (f.stat() for f in files))
    except OSError:
        return None


def _resolve_include(target: str, including: Path, include_dirs: tuple[Path, ...]) -> Path:
    # circom looks next to the including file first, then in each -l directory in order.
    for base in (including.parent, *include_dirs):
        candidate = (Path(base) / target).resolve()
        if candidate.is_file():
            return candidate
    raise CircuitError(f"{including.name}: include {target!r} not found")


def _walk_includes(path: Path, include_dirs: tuple[Path, ...], seen: set[Path]) -> Iterator[Path]:
    if path in seen:
        return
    if not path.is_file():
        raise CircuitError(f"circuit source {path} does not exist")
    seen.add(path)
    yield path
    text = _COMMENTS.sub("", path.read_text())
    for target in _INCLUDE.findall(text):
        yield from _walk_includes(_resolve_include(target, path, include_dirs), include_dirs, seen)


def load_registry(path: Path | str = REGISTRY_FILE) -> dict[str, CircuitSpec]:
    """Read a ``circuits.json`` (a list of {name, file, public, private, budget, description})."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CircuitError(f"cannot read circuit registry {path}") from exc
    if not isinstance(entries, list):
        raise CircuitError(f"{path}: expected a list of circuits")
    specs: dict[str, CircuitSpec] = {}
    for entry in entries:
        try:
            spec = CircuitSpec(
                name=entry["name"],
                source=(path.parent / entry["file"]).resolve(),
                public_inputs=tuple(entry["public"]),
                private_inputs=tuple(entry.get("private", ())),
                budget=entry["budget"],
                description=entry.get("description", ""),
            )
        except (KeyError, TypeError) as exc:
            raise CircuitError(f"{path}: malformed circuit entry") from exc
        if spec.name in specs:
            raise CircuitError(f"{path}: circuit {spec.name} listed twice")
        specs[spec.name] = spec
    return specs


def get_circuit(name: str, registry: dict[str, CircuitSpec] | None = None) -> CircuitSpec:
    """The registered circuit ``name``; ``CircuitError`` listing the known names otherwise."""
    specs = load_registry() if registry is None else registry
    try:
        return specs[name]
    except KeyError:
        known = ", ".join(sorted(specs)) or "none"
        raise CircuitError(f"unknown circuit {name!r} (known: {known})") from None
