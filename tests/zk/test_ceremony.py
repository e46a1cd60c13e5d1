"""Multi-party phase-2 ceremony (zk/ceremony.py) on a ~240-constraint Poseidon-preimage circuit
with a 2^8 local powers of tau: two hospitals contribute, a beacon finalizes, the output proves
under groth16py and verifies under snarkjs; tampering and misuse are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import groth16py
import light_poseidon_python
import pytest

from zk import ceremony
from zk.exceptions import SetupError

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "ceremony" / "preimage.circom"
CIRCOMLIB = REPO / "node_modules" / "circomlib" / "circuits"
SNARKJS = REPO / "node_modules" / ".bin" / "snarkjs"
BEACON = "0x" + "5e" * 32


@dataclass(frozen=True)
class Built:
    r1cs: Path
    ptau: Path
    workdir: Path


@dataclass(frozen=True)
class Finished:
    dir: Path
    ptau: Path
    a: ceremony.Contribution
    b: ceremony.Contribution
    final: ceremony.FinalizeResult


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    # circom2 (WASI) only opens paths under its working directory: compile inside the repo.
    (REPO / "build").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="test-ceremony-", dir=REPO / "build"))
    try:
        proc = subprocess.run(
            [
                str(REPO / "node_modules" / ".bin" / "circom2"),
                str(FIXTURE.relative_to(REPO)),
                "--O2",
                "--r1cs",
                "--wasm",
                "--sym",
                "-l",
                str(CIRCOMLIB.relative_to(REPO)),
                "-o",
                str(work.relative_to(REPO)),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        ptau = ceremony.powers_of_tau(work / "pot8.ptau", 8, contributions=1, entropy="test")
        yield Built(work / "preimage.r1cs", ptau, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def finished(built: Built) -> Finished:
    cdir = built.workdir / "ceremony"
    ceremony.init(built.r1cs, built.ptau, cdir, name="preimage")
    a = ceremony.contribute(cdir, "Hospital A", entropy="typed by the admin of A")
    b = ceremony.contribute(cdir, "Hospital B")  # entropy from the OS only
    final = ceremony.finalize(cdir, BEACON, iterations_exp=10)
    return Finished(cdir, built.ptau, a, b, final)


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _reopen(finished: Finished, dest: Path, keep: int) -> Path:
    """A copy of the finished ceremony rolled back to its first ``keep`` contributions."""
    cdir = _copy(finished.dir, dest)
    later = [f"circuit_{i:04d}.zkey" for i in range(keep + 1, 3)]
    for name in (ceremony.FINAL_ZKEY, ceremony.VK_FILE, *later):
        (cdir / name).unlink()

    def edit(data: dict) -> None:
        del data["contributions"][keep:]
        data["beacon"] = data["final"] = None

    _rewrite_manifest(cdir, edit)
    return cdir


def _flip_byte(path: Path, offset_from_end: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite_manifest(cdir: Path, edit) -> None:
    path = cdir / ceremony.MANIFEST
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------ headers


def test_headers_of_circuit_and_ptau(built: Built) -> None:
    info = ceremony.r1cs_info(built.r1cs)
    assert (info.n_constraints, info.n_public, info.n_private) == (240, 1, 2)
    assert info.required_power == 8  # 240 + 1 < 2^8
    assert ceremony.ptau_info(built.ptau) == ceremony.PtauInfo(power=8, prepared=True)


def test_not_an_r1cs_is_a_setup_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.r1cs"
    bogus.write_bytes(b"ptau" + bytes(20))
    with pytest.raises(SetupError, match="not a r1cs file"):
        ceremony.r1cs_info(bogus)


# ----------------------------------------------------------------------------- happy path


def test_manifest_records_the_chain(finished: Finished) -> None:
    data = ceremony.load_manifest(finished.dir)
    assert data["circuit"]["name"] == "preimage"
    assert data["circuit"]["constraints"] == 240
    assert data["ptau"]["power"] == 8
    names = [c["name"] for c in data["contributions"]]
    assert names == ["Hospital A", "Hospital B"]
    a, b = data["contributions"]
    assert a["previous_sha256"] == data["initial"]["zkey_sha256"]
    assert b["previous_sha256"] == a["zkey_sha256"] == finished.a.zkey_sha256
    assert b["contribution_hash"] == finished.b.contribution_hash
    assert len(finished.a.contribution_hash) == 128  # blake2b-512, as snarkjs prints it
    assert finished.a.contribution_hash != finished.b.contribution_hash
    assert data["beacon"]["hash"] == BEACON.removeprefix("0x")
    assert data["beacon"]["previous_sha256"] == b["zkey_sha256"]
    assert data["final"]["zkey_sha256"] == finished.final.zkey_sha256
    assert "typed by the admin" not in (finished.dir / ceremony.MANIFEST).read_text()


def test_verify_reports_every_contribution(finished: Finished) -> None:
    report = ceremony.verify(finished.dir, jobs=2)
    assert report.ok, report.to_dict()
    assert report.finalized
    assert [s.step for s in report.steps] == ["initial", "1", "2", "final"]
    assert [s.name for s in report.contributions] == ["Hospital A", "Hospital B"]
    assert [s.contribution_hash for s in report.contributions] == [
        finished.a.contribution_hash,
        finished.b.contribution_hash,
    ]
    assert report.steps[-1].contribution_hash == finished.final.beacon_contribution_hash
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_final_key_proves_with_groth16py_and_verifies_in_snarkjs(
    finished: Finished, tmp_path: Path
) -> None:
    pk, zkey_vk = groth16py.import_zkey(str(finished.final.zkey), str(FIXTURE), [str(CIRCOMLIB)])
    vk_text = finished.final.verification_key.read_text()
    vk = groth16py.VerifyingKey.from_snarkjs(vk_text)
    assert json.loads(zkey_vk.to_json()) == json.loads(vk.to_json())

    digest = int(light_poseidon_python.poseidon_hash([3, 4]))
    proof = groth16py.prove(pk, {"hash": digest, "a": 3, "b": 4})
    verifier = groth16py.Verifier(vk)
    assert verifier.verify(proof, [digest])
    assert not verifier.verify(proof, [digest + 1])

    # The same proof, in snarkjs JSON, under snarkjs and the exported verification_key.json.
    w = [str(int.from_bytes(proof[32 * i : 32 * i + 32], "big")) for i in range(8)]
    proof_json = {
        "pi_a": [w[0], w[1], "1"],
        "pi_b": [[w[3], w[2]], [w[5], w[4]], ["1", "0"]],
        "pi_c": [w[6], w[7], "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }
    (tmp_path / "proof.json").write_text(json.dumps(proof_json))
    results = []
    for public in ([str(digest)], [str(digest + 1)]):
        (tmp_path / "public.json").write_text(json.dumps(public))
        proc = subprocess.run(
            [
                str(SNARKJS),
                "groth16",
                "verify",
                str(finished.final.verification_key),
                str(tmp_path / "public.json"),
                str(tmp_path / "proof.json"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        results.append(proc.returncode == 0 and "OK!" in proc.stdout)
    assert results == [True, False]


# --------------------------------------------------------------------------- tampering


def test_flipped_byte_in_a_contribution_is_detected(finished: Finished, tmp_path: Path) -> None:
    cdir = _copy(finished.dir, tmp_path / "c")
    _flip_byte(cdir / "circuit_0001.zkey")
    report = ceremony.verify(cdir, all_steps=False)  # sha256 chain only, snarkjs on the last
    assert not report.ok
    bad = {s.step: s.problems for s in report.steps if s.problems}
    assert bad == {"1": ("circuit_0001.zkey sha256 differs from the manifest",)}


def test_tampered_zkey_with_a_rewritten_manifest_is_still_detected(
    finished: Finished, tmp_path: Path
) -> None:
    """An attacker who also fixes the sha256s in the manifest is caught by snarkjs itself."""
    cdir = _copy(finished.dir, tmp_path / "c")
    _flip_byte(cdir / ceremony.FINAL_ZKEY)
    new_sha = ceremony._sha256(cdir / ceremony.FINAL_ZKEY)

    def edit(data: dict) -> None:
        data["final"]["zkey_sha256"] = new_sha

    _rewrite_manifest(cdir, edit)
    report = ceremony.verify(cdir, all_steps=False)
    assert not report.ok
    final = report.steps[-1]
    assert final.step == "final" and final.problems
    assert not any("sha256" in p for p in final.problems)


def test_renamed_contributor_in_the_manifest_is_detected(
    finished: Finished, tmp_path: Path
) -> None:
    cdir = _copy(finished.dir, tmp_path / "c")

    def edit(data: dict) -> None:
        data["contributions"][0]["name"] = "Hospital Z"

    _rewrite_manifest(cdir, edit)
    report = ceremony.verify(cdir, all_steps=False)
    assert not report.ok
    assert any("differ from the manifest" in p for p in report.steps[-1].problems)


def test_a_dropped_contribution_is_detected(finished: Finished, tmp_path: Path) -> None:
    """Replacing B's zkey with one built on the initial key (skipping A) breaks the transcript,
    even when every sha256 in the manifest is rewritten to match."""
    fork = _reopen(finished, tmp_path / "fork", keep=0)
    forged = ceremony.contribute(fork, "Hospital B")
    cdir = _reopen(finished, tmp_path / "c", keep=2)
    shutil.copyfile(forged.zkey, cdir / "circuit_0002.zkey")

    def edit(data: dict) -> None:
        data["contributions"][1]["zkey_sha256"] = forged.zkey_sha256
        data["contributions"][1]["contribution_hash"] = forged.contribution_hash

    _rewrite_manifest(cdir, edit)
    report = ceremony.verify(cdir, all_steps=False)
    assert not report.ok
    assert [s.step for s in report.steps if s.problems] == ["2"]
    assert any("differ from the manifest" in p for p in report.steps[-1].problems)


# ------------------------------------------------------------------------------- refusals


def test_ptau_too_small_is_refused(built: Built, tmp_path: Path) -> None:
    small = tmp_path / "pot4.ptau"
    ceremony._snarkjs(["powersoftau", "new", "bn128", "4", str(small)], what="ptau new")
    with pytest.raises(SetupError, match=r"too small.*240 constraints.*2\^8.*only has 2\^4"):
        ceremony.init(built.r1cs, small, tmp_path / "c")
    assert not (tmp_path / "c" / ceremony.MANIFEST).exists()


def test_unprepared_ptau_is_refused() -> None:
    r1cs = ceremony.R1csInfo(n_constraints=240, n_public=1, n_private=2, n_wires=243)
    ceremony.check_ptau(r1cs, ceremony.PtauInfo(power=8, prepared=True))
    with pytest.raises(SetupError, match="not prepared"):
        ceremony.check_ptau(r1cs, ceremony.PtauInfo(power=12, prepared=False))
    big = ceremony.R1csInfo(n_constraints=255, n_public=1, n_private=0, n_wires=300)
    with pytest.raises(SetupError, match="too small"):  # 255 + 1 needs a 2^9 domain
        ceremony.check_ptau(big, ceremony.PtauInfo(power=8, prepared=True))


def test_contributing_to_a_finalized_ceremony_is_refused(
    finished: Finished, tmp_path: Path
) -> None:
    cdir = _copy(finished.dir, tmp_path / "c")
    before = (cdir / ceremony.MANIFEST).read_text()
    with pytest.raises(SetupError, match="finalized"):
        ceremony.contribute(cdir, "Hospital C")
    with pytest.raises(SetupError, match="already finalized"):
        ceremony.finalize(cdir, BEACON)
    assert (cdir / ceremony.MANIFEST).read_text() == before
    assert not (cdir / "circuit_0003.zkey").exists()


def test_second_init_duplicate_name_and_stale_zkey_are_refused(
    built: Built, finished: Finished, tmp_path: Path
) -> None:
    with pytest.raises(SetupError, match="already holds a ceremony"):
        ceremony.init(built.r1cs, built.ptau, _copy(finished.dir, tmp_path / "f"))
    empty = _reopen(finished, tmp_path / "e", keep=0)
    with pytest.raises(SetupError, match="at least 1 needed"):
        ceremony.finalize(empty, BEACON)
    cdir = _reopen(finished, tmp_path / "c", keep=1)
    with pytest.raises(SetupError, match="already contributed"):
        ceremony.contribute(cdir, "hospital a")
    _flip_byte(cdir / "circuit_0001.zkey")
    with pytest.raises(SetupError, match="does not match"):
        ceremony.contribute(cdir, "Hospital C")
    assert len(ceremony.load_manifest(cdir)["contributions"]) == 1
    assert not (cdir / "circuit_0002.zkey").exists()


@pytest.mark.parametrize("name", ["", " ", "x" * 65, "a\nb", "-dash", "Final Beacon", "a:b"])
def test_bad_contributor_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"name|reserved"):
        ceremony.contribute(tmp_path, name)


@pytest.mark.parametrize(
    ("beacon", "iterations"), [("xyz", 10), ("abc", 10), ("", 10), ("ab" * 256, 10), ("ab", 9)]
)
def test_bad_beacons_are_refused(beacon: str, iterations: int, tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="beacon"):
        ceremony.finalize(tmp_path, beacon, iterations)


def test_missing_or_malformed_manifest_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="no ceremony"):
        ceremony.verify(tmp_path)
    (tmp_path / ceremony.MANIFEST).write_text('{"format": "emr-node/zk-ceremony"}')
    with pytest.raises(SetupError, match="malformed"):
        ceremony.load_manifest(tmp_path)
    (tmp_path / ceremony.MANIFEST).write_text("not json")
    with pytest.raises(SetupError, match="not JSON"):
        ceremony.contribute(tmp_path, "Hospital A")


def test_snarkjs_failure_is_a_setup_error_without_a_stack_trace(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as info:
        ceremony._snarkjs(
            ["zkey", "contribute", str(tmp_path / "nope.zkey"), str(tmp_path / "o.zkey")],
            what="zkey contribute",
            stdin="x\n",
        )
    assert "zkey contribute failed" in str(info.value)
    assert "    at " not in str(info.value)
