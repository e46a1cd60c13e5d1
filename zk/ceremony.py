"""Multi-party Groth16 phase-2 ceremony for one circuit, driven through the snarkjs CLI.

Each hospital contributes on its own machine: the coordinator runs :func:`init`, then the
ceremony directory (or just ``ceremony.json`` plus the latest zkey) travels from hospital to
hospital, each running :func:`contribute`; anyone can :func:`verify`; the coordinator applies a
public random beacon with :func:`finalize`. The key is sound as long as ONE contributor
destroyed its randomness. snarkjs always mixes 64 bytes of OS randomness into the entropy.

Ceremony directory layout (file names are derived from indices, never read from the manifest)::

    ceremony.json               manifest (circuit, ptau, contributions, beacon, final)
    circuit.r1cs                the circuit being keyed (copied by init)
    circuit_0000.zkey           initial key from ``groth16 setup`` (no contribution yet)
    circuit_0001.zkey ...       one per contribution
    circuit_final.zkey          after the beacon
    verification_key.json       exported from circuit_final.zkey
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zk.exceptions import SetupError

MANIFEST = "ceremony.json"
R1CS_FILE = "circuit.r1cs"
FINAL_ZKEY = "circuit_final.zkey"
VK_FILE = "verification_key.json"
FORMAT = "emr-node/zk-ceremony"
VERSION = 1
BEACON_NAME = "Final Beacon"
MAX_NAME_LEN = 64
MAX_PTAU_POWER = 28  # largest bn128 powers-of-tau snarkjs supports
_LOCK = ".ceremony.lock"

_REPO_ROOT = Path(__file__).resolve().parents[1]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HEX_LINE = re.compile(r"^\s*([0-9a-f]{8})\s+([0-9a-f]{8})\s+([0-9a-f]{8})\s+([0-9a-f]{8})\s*$")
_CONTRIB_LINE = re.compile(r"contribution #(\d+) (.*):\s*$")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .,'()&/_-]*$")


# ---------------------------------------------------------------------------- binary headers


@dataclass(frozen=True)
class R1csInfo:
    """What the ceremony needs from an ``.r1cs`` header."""

    n_constraints: int
    n_public: int  # public outputs + public inputs (the "1" wire not included)
    n_private: int
    n_wires: int

    @property
    def required_power(self) -> int:
        """Smallest ptau power snarkjs accepts (its domain must exceed constraints + public)."""
        return (self.n_constraints + self.n_public).bit_length()


@dataclass(frozen=True)
class PtauInfo:
    """What the ceremony needs from a ``.ptau`` header."""

    power: int
    prepared: bool  # has the phase-2 (Lagrange) sections that ``groth16 setup`` needs


def _sections(path: Path, magic: bytes) -> dict[int, list[tuple[int, int]]]:
    """Section table of an iden3 binary file (r1cs, ptau, zkey): type -> [(offset, size)]."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != magic:
                raise SetupError(f"{path.name} is not a {magic.decode()} file")
            (n_sections,) = struct.unpack_from("<I", head, 8)
            out: dict[int, list[tuple[int, int]]] = {}
            size_total = path.stat().st_size
            for _ in range(n_sections):
                raw = f.read(12)
                if len(raw) < 12:
                    raise SetupError(f"{path.name} is truncated")
                kind, size = struct.unpack("<IQ", raw)
                pos = f.tell()
                if pos + size > size_total:
                    raise SetupError(f"{path.name} is truncated")
                out.setdefault(kind, []).append((pos, size))
                f.seek(size, os.SEEK_CUR)
            return out
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror}") from exc


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


def r1cs_info(path: str | os.PathLike[str]) -> R1csInfo:
    """Parse the header section of a circom ``.r1cs`` file."""
    p = Path(path)
    sections = _sections(p, b"r1cs")
    if 1 not in sections:
        raise SetupError(f"{p.name} has no r1cs header")
    offset, size = sections[1][0]
    data = _read_at(p, offset, size)
    try:
        (n8,) = struct.unpack_from("<I", data, 0)
        n_wires, n_out, n_pub, n_prv = struct.unpack_from("<IIII", data, 4 + n8)
        (n_constraints,) = struct.unpack_from("<I", data, 4 + n8 + 16 + 8)
    except struct.error as exc:
        raise SetupError(f"{p.name} has a malformed r1cs header") from exc
    return R1csInfo(n_constraints, n_out + n_pub, n_prv, n_wires)


def ptau_info(path: str | os.PathLike[str]) -> PtauInfo:
    """Parse the header of a powers-of-tau file; ``prepared`` iff section 12 is present."""
    p = Path(path)
    sections = _sections(p, b"ptau")
    if 1 not in sections:
        raise SetupError(f"{p.name} has no ptau header")
    offset, size = sections[1][0]
    data = _read_at(p, offset, size)
    try:
        (n8,) = struct.unpack_from("<I", data, 0)
        (power,) = struct.unpack_from("<I", data, 4 + n8)
    except struct.error as exc:
        raise SetupError(f"{p.name} has a malformed ptau header") from exc
    return PtauInfo(power=power, prepared=12 in sections)


def check_ptau(r1cs: R1csInfo, ptau: PtauInfo) -> None:
    """Refuse a ptau that cannot key the circuit (too small, or not prepared for phase 2)."""
    if ptau.power < r1cs.required_power:
        raise SetupError(
            f"powers of tau too small: the circuit has {r1cs.n_constraints} constraints and "
            f"{r1cs.n_public} public signals, needing 2^{r1cs.required_power}; "
            f"the ptau file only has 2^{ptau.power}"
        )
    if not ptau.prepared:
        raise SetupError(
            "the ptau file is not prepared for phase 2 (snarkjs powersoftau prepare phase2)"
        )


# ----------------------------------------------------------------------------- snarkjs runner


def _snarkjs_bin() -> str:
    env = os.environ.get("EMR_SNARKJS")
    if env:
        return env
    local = _REPO_ROOT / "node_modules" / ".bin" / "snarkjs"
    if local.exists():
        return str(local)
    found = shutil.which("snarkjs")
    if found:
        return found
    raise SetupError("snarkjs not found: run scripts/setup.sh (npm install) or set EMR_SNARKJS")


def _snarkjs(args: Sequence[str], *, what: str, stdin: str | None = None) -> str:
    """Run snarkjs; return its ANSI-stripped output. Never surfaces a JS stack trace.

    snarkjs exits 0 on several failures (``groth16 setup`` on a too-small ptau, ``zkey beacon``
    on bad arguments), so callers also check the files it should have written.
    """
    try:
        proc = subprocess.run(
            [_snarkjs_bin(), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise SetupError(f"{what}: cannot run snarkjs ({exc.strerror})") from exc
    out = _ANSI.sub("", proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0 or "[ERROR]" in out:
        raise SetupError(f"{what} failed: {_first_error(out)}")
    return out


def _first_error(out: str) -> str:
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("[ERROR]") or s.startswith("INVALID") or s.startswith("Error:"):
            return s.replace("[ERROR]  snarkJS: ", "").replace("[ERROR] snarkJS: ", "")[:300]
    tail = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("    at ")]
    return tail[-1][:300] if tail else "snarkjs exited with an error"


def _hash_after(out: str, title: str) -> str | None:
    """The 64-byte hash snarkjs prints as four lines of hex after a ``title`` line."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith(title):
            return _hex_block(lines, i + 1)
    return None


def _hex_block(lines: list[str], start: int) -> str | None:
    words: list[str] = []
    for line in lines[start : start + 4]:
        m = _HEX_LINE.match(line)
        if not m:
            return None
        words.extend(m.groups())
    return "".join(words)


@dataclass(frozen=True)
class _Listed:
    """One contribution as listed by ``snarkjs zkey verify``."""

    index: int
    name: str
    contribution_hash: str | None
    beacon: str | None = None
    beacon_iterations_exp: int | None = None


def _parse_verify(out: str) -> tuple[str | None, list[_Listed]]:
    """Circuit hash and contributions (ascending index) from ``zkey verify`` output."""
    lines = out.splitlines()
    listed: list[_Listed] = []
    for i, line in enumerate(lines):
        m = _CONTRIB_LINE.search(line)
        if not m:
            continue
        beacon = iters = None
        for nxt in lines[i + 5 : i + 7]:
            if "Beacon generator:" in nxt:
                beacon = nxt.split("Beacon generator:", 1)[1].strip()
            elif "Beacon iterations Exp:" in nxt:
                iters = int(nxt.split("Beacon iterations Exp:", 1)[1].strip())
        listed.append(_Listed(int(m.group(1)), m.group(2), _hex_block(lines, i + 1), beacon, iters))
    listed.sort(key=lambda c: c.index)
    return _hash_after(out, "Circuit Hash:"), listed


# ---------------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _zkey_name(index: int) -> str:
    return f"circuit_{index:04d}.zkey"


def _entropy_line(entropy: str | bytes | None) -> str:
    """One hex line for snarkjs' entropy prompt: fed on stdin, so it never shows in ``ps``."""
    if entropy is None:
        return secrets.token_hex(32)
    raw = entropy.encode() if isinstance(entropy, str) else bytes(entropy)
    if not raw:
        raise SetupError("entropy must not be empty")
    return hashlib.blake2b(raw).hexdigest()


def _check_name(name: str) -> str:
    name = name.strip()
    if not (0 < len(name) <= MAX_NAME_LEN) or not _NAME_OK.match(name):
        raise SetupError(
            f"contributor name must be 1-{MAX_NAME_LEN} characters: letters, digits, spaces "
            "and . , ' ( ) & / _ -"
        )
    if name.lower() == BEACON_NAME.lower():
        raise SetupError(f"{BEACON_NAME!r} is reserved for the beacon")
    return name


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def _locked(ceremony_dir: Path) -> Iterator[None]:
    """Serialise mutating steps on one ceremony directory (two contributors on one share)."""
    with (ceremony_dir / _LOCK).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SetupError("another ceremony step is running in this directory") from exc
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------- manifest


def load_manifest(ceremony_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and structurally validate ``ceremony.json`` (values are checked by :func:`verify`)."""
    path = Path(ceremony_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SetupError(f"no ceremony in {Path(ceremony_dir)} ({MANIFEST} missing)") from exc
    except (OSError, ValueError) as exc:
        raise SetupError(f"{MANIFEST} is unreadable or not JSON") from exc
    try:
        if data["format"] != FORMAT or data["version"] != VERSION:
            raise SetupError(f"{MANIFEST}: unsupported format or version")
        circuit, ptau, initial = data["circuit"], data["ptau"], data["initial"]
        for key in ("name", "r1cs_sha256", "circuit_hash"):
            _want(circuit[key], str)
        for key in ("constraints", "public"):
            _want(circuit[key], int)
        _want(ptau["path"], str)
        _want(ptau["sha256"], str)
        _want(ptau["power"], int)
        _want(initial["zkey_sha256"], str)
        for c in _want(data["contributions"], list):
            _want(c["index"], int)
            for key in ("name", "zkey_sha256", "previous_sha256", "contribution_hash"):
                _want(c[key], str)
        if data["beacon"] is not None:
            for key in ("hash", "contribution_hash", "previous_sha256"):
                _want(data["beacon"][key], str)
            _want(data["beacon"]["iterations_exp"], int)
        if data["final"] is not None:
            _want(data["final"]["zkey_sha256"], str)
            _want(data["final"]["verification_key_sha256"], str)
    except (KeyError, TypeError) as exc:
        raise SetupError(f"{MANIFEST} is malformed") from exc
    return data


def _want(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(kind.__name__)
    return value


def _write_manifest(ceremony_dir: Path, data: dict[str, Any]) -> None:
    tmp = ceremony_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, ceremony_dir / MANIFEST)


def _latest(data: dict[str, Any]) -> tuple[str, str]:
    """File name and sha256 of the zkey the next step builds on."""
    if data["contributions"]:
        last = data["contributions"][-1]
        return _zkey_name(last["index"]), last["zkey_sha256"]
    return _zkey_name(0), data["initial"]["zkey_sha256"]


def _resolve_ptau(data: dict[str, Any], ptau: str | os.PathLike[str] | None) -> Path:
    path = Path(ptau) if ptau is not None else Path(data["ptau"]["path"])
    if not path.is_file():
        raise SetupError(f"ptau file not found at {path}: pass the path of the ceremony's ptau")
    return path


# ------------------------------------------------------------------------------------ steps


def powers_of_tau(
    out_ptau: str | os.PathLike[str],
    power: int,
    contributions: int = 1,
    entropy: str | bytes | None = None,
) -> Path:
    """Local phase 1 for development and tests ONLY (production uses a public ptau).

    ``powersoftau new bn128 <power>``, ``contributions`` contributions, ``prepare phase2``.
    Timing on a 2-core box: 2^8 ~7 s, 2^13 ~2.5 min (prepare phase2 dominates).
    """
    if not 1 <= power <= MAX_PTAU_POWER:
        raise SetupError(f"ptau power must be in 1..{MAX_PTAU_POWER}")
    if contributions < 1:
        raise SetupError("a ptau needs at least one contribution")
    out = Path(out_ptau)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".ptau-") as tmp:
        cur = Path(tmp) / "pot_0000.ptau"
        _snarkjs(["powersoftau", "new", "bn128", str(power), str(cur)], what="powersoftau new")
        for i in range(1, contributions + 1):
            nxt = Path(tmp) / f"pot_{i:04d}.ptau"
            # A given entropy is split per contribution so two never share a seed.
            line = None if entropy is None else _entropy_line(f"{i}:".encode() + _bytes(entropy))
            _snarkjs(
                ["powersoftau", "contribute", str(cur), str(nxt), f"--name=dev contribution {i}"],
                what="powersoftau contribute",
                stdin=(line or _entropy_line(None)) + "\n",
            )
            cur = nxt
        prepared = Path(tmp) / "final.ptau"
        _snarkjs(["powersoftau", "prepare", "phase2", str(cur), str(prepared)], what="prepare")
        if not prepared.is_file():
            raise SetupError("powersoftau prepare phase2 wrote no file")
        os.replace(prepared, out)
    return out


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@dataclass(frozen=True)
class Contribution:
    """One recorded contribution (``index`` starts at 1, as snarkjs numbers them)."""

    index: int
    name: str
    zkey: Path
    zkey_sha256: str
    previous_sha256: str
    contribution_hash: str


def init(
    circuit_r1cs: str | os.PathLike[str],
    ptau: str | os.PathLike[str],
    ceremony_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """Start a ceremony: check the ptau, ``groth16 setup`` -> circuit_0000.zkey, write manifest.

    ``name`` defaults to the r1cs file stem. The ptau path is recorded as an absolute path with
    its sha256; verifiers on other machines pass their own copy to :func:`verify`.
    """
    r1cs_src, ptau_path, cdir = Path(circuit_r1cs), Path(ptau).resolve(), Path(ceremony_dir)
    info, pinfo = r1cs_info(r1cs_src), ptau_info(ptau_path)
    check_ptau(info, pinfo)
    if (cdir / MANIFEST).exists():
        raise SetupError(f"{cdir} already holds a ceremony")
    cdir.mkdir(parents=True, exist_ok=True)
    with _locked(cdir):
        r1cs = cdir / R1CS_FILE
        shutil.copyfile(r1cs_src, r1cs)
        zkey = cdir / _zkey_name(0)
        tmp = cdir / f".{zkey.name}.tmp"
        tmp.unlink(missing_ok=True)
        out = _snarkjs(
            ["groth16", "setup", str(r1cs), str(ptau_path), str(tmp)], what="groth16 setup"
        )
        circuit_hash = _hash_after(out, "Circuit hash:")
        if not tmp.is_file() or circuit_hash is None:
            raise SetupError(f"groth16 setup failed: {_first_error(out)}")
        os.replace(tmp, zkey)
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "protocol": "groth16",
            "curve": "bn128",
            "circuit": {
                "name": name or r1cs_src.stem,
                "r1cs": R1CS_FILE,
                "r1cs_sha256": _sha256(r1cs),
                "constraints": info.n_constraints,
                "public": info.n_public,
                "circuit_hash": circuit_hash,
            },
            "ptau": {"path": str(ptau_path), "sha256": _sha256(ptau_path), "power": pinfo.power},
            "initial": {"zkey": zkey.name, "zkey_sha256": _sha256(zkey), "created_at": _now()},
            "contributions": [],
            "beacon": None,
            "final": None,
        }
        _write_manifest(cdir, data)
    return data


def contribute(
    ceremony_dir: str | os.PathLike[str], name: str, entropy: str | bytes | None = None
) -> Contribution:
    """Add one hospital's contribution on top of the latest zkey.

    Needs only ``ceremony.json`` and the latest zkey (no ptau). ``entropy`` is optional extra
    randomness (hashed, passed on stdin, mixed by snarkjs with OS randomness, never stored).
    """
    cdir = Path(ceremony_dir)
    name = _check_name(name)
    with _locked(cdir):
        data = load_manifest(cdir)
        if data["beacon"] is not None or data["final"] is not None:
            raise SetupError("the ceremony is finalized: no more contributions")
        if any(c["name"].lower() == name.lower() for c in data["contributions"]):
            raise SetupError(f"{name!r} has already contributed")
        prev_name, prev_sha = _latest(data)
        prev = cdir / prev_name
        if not prev.is_file() or _sha256(prev) != prev_sha:
            raise SetupError(f"{prev_name} is missing or does not match {MANIFEST}")
        index = len(data["contributions"]) + 1
        zkey = cdir / _zkey_name(index)
        tmp = cdir / f".{zkey.name}.tmp"
        tmp.unlink(missing_ok=True)
        out = _snarkjs(
            ["zkey", "contribute", str(prev), str(tmp), f"--name={name}"],
            what="zkey contribute",
            stdin=_entropy_line(entropy) + "\n",
        )
        chash = _hash_after(out, "Contribution Hash:")
        if not tmp.is_file() or chash is None:
            raise SetupError(f"zkey contribute failed: {_first_error(out)}")
        os.replace(tmp, zkey)
        record = Contribution(index, name, zkey, _sha256(zkey), prev_sha, chash)
        data["contributions"].append(
            {
                "index": index,
                "name": name,
                "zkey": zkey.name,
                "zkey_sha256": record.zkey_sha256,
                "previous_sha256": prev_sha,
                "contribution_hash": chash,
                "contributed_at": _now(),
            }
        )
        _write_manifest(cdir, data)
    return record


@dataclass(frozen=True)
class FinalizeResult:
    """Outputs of :func:`finalize`."""

    zkey: Path
    verification_key: Path
    zkey_sha256: str
    verification_key_sha256: str
    beacon_contribution_hash: str


def finalize(
    ceremony_dir: str | os.PathLike[str],
    beacon_hex: str,
    iterations_exp: int = 10,
    *,
    ptau: str | os.PathLike[str] | None = None,
    min_contributions: int = 1,
) -> FinalizeResult:
    """Apply the public beacon, verify the result, export ``verification_key.json``.

    ``beacon_hex`` must be a value nobody could know before the last contribution (e.g. a
    future block hash announced in advance); it is hashed 2^``iterations_exp`` times (10..63).
    The final zkey is checked with ``zkey verify`` against the r1cs and ptau before it is
    recorded, so the coordinator never publishes an unverified key.
    """
    cdir = Path(ceremony_dir)
    beacon = beacon_hex.lower().removeprefix("0x")
    if not re.fullmatch(r"(?:[0-9a-f]{2}){1,255}", beacon):
        raise SetupError("beacon must be 1-255 bytes of hex")
    if not 10 <= iterations_exp <= 63:
        raise SetupError("beacon iterations exponent must be in 10..63")
    with _locked(cdir):
        data = load_manifest(cdir)
        if data["beacon"] is not None or data["final"] is not None:
            raise SetupError("the ceremony is already finalized")
        if len(data["contributions"]) < min_contributions:
            raise SetupError(
                f"the ceremony has {len(data['contributions'])} contribution(s); "
                f"at least {min_contributions} needed before the beacon"
            )
        ptau_path = _resolve_ptau(data, ptau)
        if _sha256(ptau_path) != data["ptau"]["sha256"]:
            raise SetupError("the ptau file does not match the one the ceremony started from")
        prev_name, prev_sha = _latest(data)
        prev = cdir / prev_name
        if not prev.is_file() or _sha256(prev) != prev_sha:
            raise SetupError(f"{prev_name} is missing or does not match {MANIFEST}")
        final, vk = cdir / FINAL_ZKEY, cdir / VK_FILE
        tmp, vk_tmp = cdir / f".{FINAL_ZKEY}.tmp", cdir / f".{VK_FILE}.tmp"
        for p in (tmp, vk_tmp):
            p.unlink(missing_ok=True)
        try:
            out = _snarkjs(
                [
                    "zkey",
                    "beacon",
                    str(prev),
                    str(tmp),
                    beacon,
                    str(iterations_exp),
                    f"--name={BEACON_NAME}",
                ],
                what="zkey beacon",
            )
            chash = _hash_after(out, "Contribution Hash:")
            if not tmp.is_file() or chash is None:
                raise SetupError(f"zkey beacon failed: {_first_error(out)}")
            beacon_rec = {
                "hash": beacon,
                "iterations_exp": iterations_exp,
                "contribution_hash": chash,
                "previous_sha256": prev_sha,
            }
            problems = _check_zkey(
                cdir / R1CS_FILE, ptau_path, tmp, data, len(data["contributions"]), beacon_rec
            )
            if problems:
                raise SetupError("the beaconed key does not verify: " + "; ".join(problems))
            _snarkjs(
                ["zkey", "export", "verificationkey", str(tmp), str(vk_tmp)],
                what="export verificationkey",
            )
            if not vk_tmp.is_file():
                raise SetupError("export verificationkey wrote no file")
            os.replace(tmp, final)
            os.replace(vk_tmp, vk)
        finally:
            for p in (tmp, vk_tmp):
                p.unlink(missing_ok=True)
        result = FinalizeResult(final, vk, _sha256(final), _sha256(vk), chash)
        data["beacon"] = beacon_rec
        data["final"] = {
            "zkey": FINAL_ZKEY,
            "zkey_sha256": result.zkey_sha256,
            "verification_key": VK_FILE,
            "verification_key_sha256": result.verification_key_sha256,
            "finalized_at": _now(),
        }
        _write_manifest(cdir, data)
    return result


# ------------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class StepCheck:
    """Verification outcome of one zkey of the chain (index 0 = initial, ``final`` = beaconed)."""

    step: str  # "initial", "1", "2", ..., "final"
    name: str
    zkey_sha256: str
    contribution_hash: str | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CeremonyReport:
    """Everything :func:`verify` checked; ``ok`` only if every check passed."""

    circuit: str
    constraints: int
    ptau_power: int
    steps: tuple[StepCheck, ...]
    finalized: bool
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.ok for s in self.steps)

    @property
    def contributions(self) -> tuple[StepCheck, ...]:
        return tuple(s for s in self.steps if s.step not in ("initial", "final"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        for s, step in zip(d["steps"], self.steps, strict=True):
            s["ok"] = step.ok
        return d


def _check_zkey(
    r1cs: Path,
    ptau: Path,
    zkey: Path,
    data: dict[str, Any],
    n_contrib: int,
    beacon: dict[str, Any] | None,
) -> list[str]:
    """``zkey verify`` one file and compare its transcript with the manifest's first entries."""
    try:
        out = _snarkjs(["zkey", "verify", str(r1cs), str(ptau), str(zkey)], what="zkey verify")
    except SetupError as exc:
        return [str(exc)]
    problems: list[str] = []
    if "ZKey Ok!" not in out:
        problems.append("zkey verify did not report success")
    circuit_hash, listed = _parse_verify(out)
    if circuit_hash != data["circuit"]["circuit_hash"]:
        problems.append("circuit hash differs from the manifest")
    expected = [
        _Listed(c["index"], c["name"], c["contribution_hash"])
        for c in data["contributions"][:n_contrib]
    ]
    if beacon is not None:
        expected.append(
            _Listed(
                n_contrib + 1,
                BEACON_NAME,
                beacon["contribution_hash"],
                beacon["hash"],
                beacon["iterations_exp"],
            )
        )
    if listed != expected:
        problems.append("the contributions inside the zkey differ from the manifest")
    return problems


@dataclass(frozen=True)
class _Step:
    label: str
    name: str
    file: str
    sha256: str
    record: dict[str, Any] | None = None
    n_contrib: int = 0
    is_beacon: bool = False


def verify(
    ceremony_dir: str | os.PathLike[str],
    ptau: str | os.PathLike[str] | None = None,
    *,
    all_steps: bool = True,
    jobs: int | None = None,
) -> CeremonyReport:
    """Check the whole ceremony; report every step rather than stop at the first problem.

    Checks: r1cs and ptau sha256; each zkey's sha256 and the ``previous_sha256`` chain;
    ``snarkjs zkey verify`` (r1cs, ptau, zkey) of each zkey (``all_steps``; otherwise only the
    latest, whose transcript covers every earlier contribution), with its transcript matching
    the manifest; the beacon; and that verification_key.json is the one the final zkey exports.
    ``jobs`` zkey verifications run in parallel (default: up to 4, one per CPU; each needs
    memory in proportion to the ptau). Raises :class:`SetupError` only if there is no readable
    manifest or ptau.
    """
    cdir = Path(ceremony_dir)
    data = load_manifest(cdir)
    problems: list[str] = []
    r1cs = cdir / R1CS_FILE
    if not r1cs.is_file() or _sha256(r1cs) != data["circuit"]["r1cs_sha256"]:
        problems.append(f"{R1CS_FILE} is missing or does not match the manifest")
    ptau_path = _resolve_ptau(data, ptau)
    if _sha256(ptau_path) != data["ptau"]["sha256"]:
        problems.append("the ptau file does not match the manifest")

    chain = [_Step("initial", "initial setup", _zkey_name(0), data["initial"]["zkey_sha256"])]
    prev_sha = data["initial"]["zkey_sha256"]
    for n, c in enumerate(data["contributions"], start=1):
        if c["index"] != n:
            problems.append(f"contribution #{c['index']} is out of sequence (expected #{n})")
        if c["previous_sha256"] != prev_sha:
            problems.append(f"contribution #{n} does not chain onto the previous zkey")
        chain.append(_Step(str(n), c["name"], _zkey_name(n), c["zkey_sha256"], c, n))
        prev_sha = c["zkey_sha256"]
    beacon, final = data["beacon"], data["final"]
    if (beacon is None) != (final is None):
        problems.append("beacon and final key must be recorded together")
    if beacon is not None and final is not None:
        if beacon["previous_sha256"] != prev_sha:
            problems.append("the beacon does not chain onto the last contribution")
        n = len(data["contributions"])
        chain.append(_Step("final", BEACON_NAME, FINAL_ZKEY, final["zkey_sha256"], beacon, n, True))

    def check(pos: int, st: _Step) -> StepCheck:
        zkey = cdir / st.file
        step_problems: list[str] = []
        actual = _sha256(zkey) if zkey.is_file() else None
        if actual is None:
            step_problems.append(f"{st.file} is missing")
        elif actual != st.sha256:
            step_problems.append(f"{st.file} sha256 differs from the manifest")
        if actual is not None and (all_steps or pos == len(chain) - 1):
            bcn = st.record if st.is_beacon else None
            step_problems += _check_zkey(r1cs, ptau_path, zkey, data, st.n_contrib, bcn)
        chash = st.record["contribution_hash"] if st.record else None
        return StepCheck(st.label, st.name, actual or "", chash, tuple(step_problems))

    # Each zkey verify is one single-threaded node process: run a few side by side.
    workers = max(1, jobs if jobs is not None else min(os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        steps = list(pool.map(check, range(len(chain)), chain))

    if final is not None:
        problems += _check_vk(cdir, final)
    return CeremonyReport(
        circuit=data["circuit"]["name"],
        constraints=data["circuit"]["constraints"],
        ptau_power=data["ptau"]["power"],
        steps=tuple(steps),
        finalized=final is not None,
        problems=tuple(problems),
    )


def _check_vk(cdir: Path, final: dict[str, Any]) -> list[str]:
    vk, zkey = cdir / VK_FILE, cdir / FINAL_ZKEY
    if not vk.is_file():
        return [f"{VK_FILE} is missing"]
    problems = []
    if _sha256(vk) != final["verification_key_sha256"]:
        problems.append(f"{VK_FILE} sha256 differs from the manifest")
    if not zkey.is_file():
        return problems
    with tempfile.TemporaryDirectory(dir=cdir, prefix=".vk-") as tmp:
        exported = Path(tmp) / VK_FILE
        try:
            _snarkjs(
                ["zkey", "export", "verificationkey", str(zkey), str(exported)],
                what="export verificationkey",
            )
            same = json.loads(exported.read_text()) == json.loads(vk.read_text())
        except (SetupError, OSError, ValueError):
            same = False
    if not same:
        problems.append(f"{VK_FILE} is not the key exported by {FINAL_ZKEY}")
    return problems
