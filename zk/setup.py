"""Groth16 key generation: single-party dev setup and import of a ceremony's zkey.

A dev setup (``groth16py.setup_circom``) knows its toxic waste: fine for tests and a local
chain, never for production, where keys come from the snarkjs ceremony (``zk.ceremony``) and
are imported with ``import_ceremony``. Both write the artifact layout of ``zk.artifacts`` and
keep a per-process cache so a test session sets each circuit up once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import groth16py

from zk.artifacts import KeyPair, SetupKind, SetupManifest, key_dir, load_keys, save_keys
from zk.exceptions import SetupError
from zk.registry import CircuitSpec

T = TypeVar("T")

_CACHE: dict[tuple[str, str], KeyPair] = {}
_LOCK = threading.Lock()
_COUNT = re.compile(r"(?<!non-)linear constraints:\s*(\d+)|non-linear constraints:\s*(\d+)")


@contextlib.contextmanager
def _captured_stdout() -> Iterator[list[str]]:
    """Capture file descriptor 1: groth16py's embedded circom compiler prints its statistics
    there (which we parse for its constraint count) and nothing else should see them."""
    out: list[str] = []
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield out
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def _count_constraints(compiler_output: str) -> int | None:
    found = _COUNT.findall(compiler_output)
    if not found:
        return None
    return sum(int(a or b) for a, b in found)


def _run_groth16py(what: str, spec: CircuitSpec, fn: Callable[[], T]) -> tuple[T, int | None]:
    try:
        with _captured_stdout() as out:
            result = fn()
    except (groth16py.SetupError, groth16py.EncodingError, ValueError, OSError) as exc:
        raise SetupError(f"{what} failed for {spec.name}") from exc
    return result, _count_constraints("".join(out))


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _cache_key(spec: CircuitSpec, artifacts_dir: Path | str) -> tuple[str, str]:
    return (str(key_dir(spec, Path(artifacts_dir).resolve())), spec.circuit_hash)


def _manifest(
    spec: CircuitSpec, kind: SetupKind, constraints: int | None, zkey_sha256: str | None = None
) -> SetupManifest:
    return SetupManifest(
        circuit=spec.name,
        circuit_hash=spec.circuit_hash,
        kind=kind,
        created=_now(),
        n_public=spec.n_public,
        groth16py=groth16py.__version__,
        constraints=constraints,
        zkey_sha256=zkey_sha256,
    )


def dev_setup(spec: CircuitSpec, artifacts_dir: Path | str, *, reuse: bool = True) -> KeyPair:
    """Keys for ``spec`` from an UNSAFE single-party setup.

    With ``reuse`` (the default) keys already set up in this process or saved under
    ``artifacts_dir`` for the same circuit hash are returned instead (including ceremony keys,
    which a dev setup never overwrites).
    """
    cache_key = _cache_key(spec, artifacts_dir)
    with _LOCK:
        if reuse and cache_key in _CACHE:
            return _CACHE[cache_key]
        existing = key_dir(spec, artifacts_dir)
        if (existing / "setup.json").exists():
            keys = load_keys(spec, artifacts_dir)
            if reuse or keys.manifest.kind == "ceremony":
                _CACHE[cache_key] = keys
                return keys
        (pk, vk), constraints = _run_groth16py(
            "dev setup",
            spec,
            lambda: groth16py.setup_circom(str(spec.source), spec.link_libraries),
        )
        if vk.n_public != spec.n_public:
            raise SetupError(
                f"{spec.name}: setup produced {vk.n_public} public inputs, spec has {spec.n_public}"
            )
        keys = save_keys(spec, artifacts_dir, pk, vk, _manifest(spec, "dev", constraints))
        _CACHE[cache_key] = keys
        return keys


def _canonical_vk(text: str) -> str:
    return groth16py.VerifyingKey.from_snarkjs(text).to_json()


def import_ceremony(
    spec: CircuitSpec,
    zkey_path: Path | str,
    vk_json_path: Path | str,
    artifacts_dir: Path | str,
) -> KeyPair:
    """Import a snarkjs ceremony ``.zkey`` and its exported ``verification_key.json``.

    The zkey's own verification key must equal the JSON one (the one the contracts will be
    deployed with); the circuit is recompiled from ``spec`` so the prover can witness in-process.
    """
    zkey_path, vk_json_path = Path(zkey_path), Path(vk_json_path)
    try:
        zkey_sha = hashlib.sha256(zkey_path.read_bytes()).hexdigest()
        given_vk = _canonical_vk(vk_json_path.read_text())
    except (OSError, ValueError, groth16py.EncodingError) as exc:
        raise SetupError(
            f"cannot read the ceremony zkey or verification key for {spec.name}"
        ) from exc
    (pk, vk), constraints = _run_groth16py(
        "zkey import",
        spec,
        lambda: groth16py.import_zkey(str(zkey_path), str(spec.source), spec.link_libraries),
    )
    if json.loads(vk.to_json()) != json.loads(given_vk):
        raise SetupError(f"{spec.name}: the verification key does not belong to the zkey")
    if vk.n_public != spec.n_public:
        raise SetupError(
            f"{spec.name}: the zkey has {vk.n_public} public inputs, the circuit {spec.n_public}"
        )
    keys = save_keys(
        spec, artifacts_dir, pk, vk, _manifest(spec, "ceremony", constraints, zkey_sha)
    )
    with _LOCK:
        _CACHE[_cache_key(spec, artifacts_dir)] = keys
    return keys


def clear_cache() -> None:
    """Forget keys set up or imported in this process (they stay on disk)."""
    with _LOCK:
        _CACHE.clear()
