"""On-disk Groth16 key artifacts, versioned by circuit hash.

Layout: ``<artifacts_dir>/<circuit>/<circuit_hash[:16]>/`` holding

* ``proving_key.bin`` - groth16py ``ProvingKey.save`` (CRS + constraints + witness wasm),
* ``verification_key.json`` - snarkjs-format verification key (what the contracts take),
* ``setup.json`` - the manifest: circuit, circuit_hash, kind ("dev" | "ceremony"), created,
  n_public, groth16py version, constraints as counted by groth16py's compiler.

Keys whose manifest names another circuit hash are refused: a proof made with them would not
match the circuit the node believes it is running.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import groth16py

from zk.exceptions import SetupError
from zk.registry import CircuitSpec

PROVING_KEY = "proving_key.bin"
VERIFICATION_KEY = "verification_key.json"
MANIFEST = "setup.json"

SetupKind = Literal["dev", "ceremony"]


@dataclass(frozen=True)
class SetupManifest:
    circuit: str
    circuit_hash: str
    kind: SetupKind
    created: str
    n_public: int
    groth16py: str
    constraints: int | None = None
    zkey_sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class KeyPair:
    """The keys of one circuit version, as loaded or freshly set up."""

    spec: CircuitSpec
    proving_key: groth16py.ProvingKey
    verifying_key: groth16py.VerifyingKey
    manifest: SetupManifest
    directory: Path

    @property
    def verification_key_json(self) -> str:
        """snarkjs ``verification_key.json`` text (for the Solidity exporter / contracts)."""
        return self.verifying_key.to_json()


def key_dir(spec: CircuitSpec, artifacts_dir: Path | str) -> Path:
    return Path(artifacts_dir) / spec.name / spec.circuit_hash[:16]


def save_keys(
    spec: CircuitSpec,
    artifacts_dir: Path | str,
    pk: groth16py.ProvingKey,
    vk: groth16py.VerifyingKey,
    manifest: SetupManifest,
) -> KeyPair:
    directory = key_dir(spec, artifacts_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Manifest last: its presence means the directory is complete.
        (directory / MANIFEST).unlink(missing_ok=True)
        pk.save(str(directory / PROVING_KEY))
        (directory / VERIFICATION_KEY).write_text(vk.to_json())
        (directory / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    except (OSError, ValueError, RuntimeError) as exc:
        raise SetupError(f"cannot write keys for {spec.name} to {directory}") from exc
    return KeyPair(spec, pk, vk, manifest, directory)


def read_manifest(directory: Path) -> SetupManifest:
    try:
        data = json.loads((directory / MANIFEST).read_text())
        return SetupManifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise SetupError(f"unreadable setup manifest in {directory}") from exc


def load_keys(spec: CircuitSpec, artifacts_dir: Path | str) -> KeyPair:
    """Load the keys of ``spec``'s current circuit hash; ``SetupError`` if absent or stale."""
    circuit_hash = spec.circuit_hash
    directory = key_dir(spec, artifacts_dir)
    if not (directory / MANIFEST).exists():
        stale = sorted(p.parent.name for p in directory.parent.glob("*/" + MANIFEST))
        hint = f"; keys exist only for circuit hashes {', '.join(stale)}" if stale else ""
        raise SetupError(
            f"no keys for {spec.name} at circuit hash {circuit_hash[:16]}{hint} "
            "(run a dev setup or import the ceremony)"
        )
    manifest = read_manifest(directory)
    if manifest.circuit != spec.name or manifest.circuit_hash != circuit_hash:
        raise SetupError(
            f"keys in {directory} are for {manifest.circuit} at circuit hash "
            f"{manifest.circuit_hash[:16]}, not {spec.name} at {circuit_hash[:16]}"
        )
    try:
        vk = groth16py.VerifyingKey.from_snarkjs_file(str(directory / VERIFICATION_KEY))
        pk = groth16py.ProvingKey.load(str(directory / PROVING_KEY))
    except (OSError, ValueError, groth16py.EncodingError, groth16py.SetupError) as exc:
        raise SetupError(f"unreadable keys for {spec.name} in {directory}") from exc
    if vk.n_public != spec.n_public or manifest.n_public != spec.n_public:
        raise SetupError(
            f"verification key for {spec.name} has {vk.n_public} public inputs, "
            f"the circuit {spec.n_public}"
        )
    return KeyPair(spec, pk, vk, manifest, directory)
