"""snarkjs interoperability: proof JSON conversions and thin wrappers around its CLI.

groth16py's 256-byte proofs are in EVM word order (B's coordinates c1 first); snarkjs JSON
keeps field-extension coordinates c0 first. The CLI wrappers let tests and the ceremony
cross-check groth16py against the reference JavaScript implementation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zk.exceptions import ProofInvalid, SetupError, WitnessError, ZKError
from zk.field import P, R
from zk.models import Proof

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 300.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_MESSAGE = 500


# -- JSON conversions ------------------------------------------------------------------------


def proof_to_snarkjs(proof: Proof) -> tuple[dict[str, Any], list[str]]:
    """(proof.json, public.json) as snarkjs writes them."""
    w = [str(x) for x in proof.words]
    proof_json = {
        "pi_a": [w[0], w[1], "1"],
        "pi_b": [[w[3], w[2]], [w[5], w[4]], ["1", "0"]],
        "pi_c": [w[6], w[7], "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }
    return proof_json, [str(x) for x in proof.public_inputs]


def _number(value: object, bound: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProofInvalid(f"{what} must be a decimal number")
    try:
        number = int(value)
    except ValueError:
        raise ProofInvalid(f"{what} must be a decimal number") from None
    if not 0 <= number < bound:
        raise ProofInvalid(f"{what} is out of range")
    return number


def _affine(point: object, one: object, what: str) -> Sequence[Any]:
    """Coordinates of a snarkjs [x, y, z] point, which must be affine (z = 1)."""
    if not isinstance(point, list) or len(point) != 3 or point[2] != one:
        raise ProofInvalid(f"{what} must be an affine point [x, y, 1]")
    return point[:2]


def proof_from_snarkjs(
    proof_json: Mapping[str, Any] | str, public_json: Sequence[Any] | str
) -> Proof:
    """A ``Proof`` from snarkjs's proof.json and public.json (objects or JSON text)."""
    try:
        proof_obj = json.loads(proof_json) if isinstance(proof_json, str) else proof_json
        public = json.loads(public_json) if isinstance(public_json, str) else public_json
    except json.JSONDecodeError:
        raise ProofInvalid("proof or public signals are not JSON") from None
    if not isinstance(proof_obj, Mapping) or not isinstance(public, (list, tuple)):
        raise ProofInvalid("snarkjs proof must be an object and public signals a list")
    if proof_obj.get("protocol", "groth16") != "groth16":
        raise ProofInvalid("not a Groth16 proof")
    try:
        ax, ay = _affine(proof_obj["pi_a"], "1", "pi_a")
        bx, by = _affine(proof_obj["pi_b"], ["1", "0"], "pi_b")
        cx, cy = _affine(proof_obj["pi_c"], "1", "pi_c")
        if not all(isinstance(c, list) and len(c) == 2 for c in (bx, by)):
            raise ProofInvalid("pi_b coordinates must be [c0, c1] pairs")
        ordered = [ax, ay, bx[1], bx[0], by[1], by[0], cx, cy]
    except KeyError as exc:
        raise ProofInvalid(f"snarkjs proof lacks {exc.args[0]}") from None
    words = [_number(v, P, "proof coordinate") for v in ordered]
    inputs = tuple(_number(v, R, "public signal") for v in public)
    return Proof.from_words(words, inputs)


# -- CLI -------------------------------------------------------------------------------------


def snarkjs_bin() -> Path:
    """The repository's snarkjs (``npm install`` puts it in node_modules/.bin)."""
    path = REPO_ROOT / "node_modules" / ".bin" / "snarkjs"
    if not path.exists():
        raise SetupError("snarkjs not found: run `npm install` in the repository root")
    return path


def _tool_message(output: str) -> str:
    """The tool's own error line(s), without colours or JavaScript stack frames."""
    lines = [_ANSI.sub("", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if line and not line.startswith("at ")]
    errors = [line for line in lines if "[ERROR]" in line or line.startswith(("Error", "error"))]
    chosen = errors or lines[-1:] or ["no output"]
    message = " | ".join(dict.fromkeys(chosen))
    return message[:_MAX_MESSAGE]


def run_snarkjs(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    error: type[ZKError] = SetupError,
) -> str:
    """Run ``snarkjs *args``; return its (colourless) stdout, or raise ``error`` with the
    tool's message when it exits non-zero."""
    command = [str(snarkjs_bin()), *(str(a) for a in args)]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise error(f"snarkjs {args[0] if args else ''} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise SetupError(f"cannot run snarkjs: {exc.strerror}") from None
    if done.returncode != 0:
        name = " ".join(str(a) for a in args[:2])
        message = _tool_message(done.stderr + "\n" + done.stdout)
        raise error(f"snarkjs {name} failed: {message}")
    return _ANSI.sub("", done.stdout)


def snarkjs_verify(
    verification_key: Mapping[str, Any] | str,
    proof: Proof,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> bool:
    """Verify with ``snarkjs groth16 verify``: True on its "OK!", False on any rejection."""
    vk_text = (
        verification_key if isinstance(verification_key, str) else json.dumps(verification_key)
    )
    proof_json, public_json = proof_to_snarkjs(proof)
    with tempfile.TemporaryDirectory(prefix="snarkjs-verify-") as tmp:
        folder = Path(tmp)
        (folder / "vk.json").write_text(vk_text)
        (folder / "proof.json").write_text(json.dumps(proof_json))
        (folder / "public.json").write_text(json.dumps(public_json))
        try:
            out = run_snarkjs(
                "groth16",
                "verify",
                "vk.json",
                "public.json",
                "proof.json",
                cwd=folder,
                timeout=timeout,
                error=ProofInvalid,
            )
        except ProofInvalid as exc:
            if "timed out" in str(exc):
                raise SetupError(str(exc)) from None
            return False
    return "OK!" in out


def _json_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise WitnessError("circuit inputs must be integers")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        raise WitnessError("circuit inputs must be integers or lists of integers")

    return {str(name): convert(value) for name, value in inputs.items()}


def snarkjs_fullprove(
    wasm: str | os.PathLike[str],
    zkey: str | os.PathLike[str],
    inputs: Mapping[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Proof:
    """Witness + proof with ``snarkjs groth16 fullprove``; WitnessError when the circuit
    rejects the inputs. The proof is not verified here."""
    wasm_path, zkey_path = Path(wasm).resolve(), Path(zkey).resolve()
    for path in (wasm_path, zkey_path):
        if not path.is_file():
            raise SetupError(f"{path.name} not found")
    with tempfile.TemporaryDirectory(prefix="snarkjs-prove-") as tmp:
        folder = Path(tmp)
        (folder / "input.json").write_text(json.dumps(_json_inputs(inputs)))
        run_snarkjs(
            "groth16",
            "fullprove",
            "input.json",
            wasm_path,
            zkey_path,
            "proof.json",
            "public.json",
            cwd=folder,
            timeout=timeout,
            error=WitnessError,
        )
        return proof_from_snarkjs(
            (folder / "proof.json").read_text(), (folder / "public.json").read_text()
        )
