"""Registry, circuit hashes, circom2 compilation, R1CS/sym parsing and constraint budgets."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from zk import compiler
from zk.compiler import CompileReport, check_budget, compile_circuit, parse_r1cs
from zk.exceptions import BudgetExceeded, CircuitError
from zk.registry import (
    CIRCOMLIB_DIR,
    LIB_DIR,
    REGISTRY_FILE,
    CircuitSpec,
    get_circuit,
    load_registry,
)

# circom 2.2.3 --O2 with circomlib 2.0.5. A change here is a change in proving cost: update
# the numbers (and circuits.json budgets) deliberately.
CLINICIAN_ACCESS_COMPONENTS = {
    # 20 x (Poseidon(2) 240 + swap 1) + Num2Bits(20) index + OneHot(21) depth + 21 selections
    "tree": 4882,
    "credential": 489,  # Num2Bits(32) + Num2Bits(4) + Poseidon(1) 213 + Poseidon(2) 240
    "ctx": 241,  # Num2Bits(240) + the class-hospital check (its newest wire is a ctx bit)
    "nullifier": 240,  # Poseidon(2)
    "licence": 40,  # Num2Bits(40) of expiry - time - 1
    "roleCheck": 15,  # 16-to-1 multiplexer over the mask bits
    "main": 0,  # main's own inputs, no constraint of its own
}


@pytest.fixture(scope="module")
def clinician_report() -> CompileReport:
    return compile_circuit(get_circuit("clinician_access"))


def test_registry_lists_both_circuits_with_ordered_public_inputs():
    specs = load_registry()
    assert set(specs) == {"clinician_access", "age_at_least"}
    ca = specs["clinician_access"]
    assert ca.public_inputs == ("root", "context", "scope", "epochNullifier")
    assert ca.signals["siblings"] == 20 and ca.signals["secret"] is None
    assert ca.signals["depth"] is None and ca.signals["index"] is None
    assert ca.budget == 6025 and ca.source.is_file()
    assert specs["age_at_least"].public_inputs == (
        "dobCommitment",
        "currentDate",
        "minAge",
        "signalHash",
    )


def test_unknown_circuit_names_the_known_ones():
    with pytest.raises(CircuitError, match="age_at_least, clinician_access"):
        get_circuit("nope")


def test_malformed_registries_raise_circuit_error(tmp_path):
    bad = tmp_path / "circuits.json"
    bad.write_text("{not json")
    with pytest.raises(CircuitError):
        load_registry(bad)
    bad.write_text(json.dumps([{"name": "x", "file": "x.circom"}]))
    with pytest.raises(CircuitError, match="malformed"):
        load_registry(bad)
    entry = json.loads(REGISTRY_FILE.read_text())[1]
    entry["file"] = str(get_circuit("age_at_least").source)
    bad.write_text(json.dumps([entry, entry]))
    with pytest.raises(CircuitError, match="twice"):
        load_registry(bad)
    bad.write_text(json.dumps([{**entry, "budget": 0}]))
    with pytest.raises(CircuitError, match="budget"):
        load_registry(bad)


def test_hash_covers_every_included_file(tmp_path):
    spec = get_circuit("clinician_access")
    names = [p.name for p in spec.files()]
    assert names[0] == "clinician_access.circom"
    for own in ("credential.circom", "lean_imt.circom", "roles.circom", "licence.circom"):
        assert (LIB_DIR / own).resolve() in spec.files()
    assert (CIRCOMLIB_DIR / "poseidon_constants.circom").resolve() in spec.files()
    # A copy of the lib is the same circuit; editing one template is a new one.
    lib = tmp_path / "lib"
    shutil.copytree(LIB_DIR, lib)
    copy = dataclasses.replace(spec, include_dirs=(lib, CIRCOMLIB_DIR))
    assert copy.circuit_hash == spec.circuit_hash
    (lib / "licence.circom").write_text((lib / "licence.circom").read_text() + "\n")
    assert copy.circuit_hash != spec.circuit_hash


def test_missing_include_is_a_circuit_error(tmp_path):
    src = tmp_path / "broken.circom"
    src.write_text('pragma circom 2.0.0;\ninclude "no_such_file.circom";\n')
    spec = CircuitSpec("broken", src, ("a",), (), budget=1)
    with pytest.raises(CircuitError, match="no_such_file"):
        _ = spec.circuit_hash


def test_clinician_access_totals_and_components(clinician_report):
    r = clinician_report
    assert r.constraints == 5907
    assert r.public_inputs == 4 and r.public_outputs == 0
    assert r.private_inputs == 26  # secret, hospitalId, role, licenceExpiry, depth, index + 20
    assert r.wires == 5928
    costs = {c.component: c.constraints for c in r.components}
    assert costs == CLINICIAN_ACCESS_COMPONENTS
    assert sum(c.constraints for c in r.components) == r.constraints
    assert sum(c.wires for c in r.components) == r.wires - 1  # wire 0 is the constant one
    assert check_budget(r, get_circuit("clinician_access")) is r
    assert "tree" in r.table().splitlines()[1]


def test_age_at_least_compiles_into_a_fresh_build_dir_then_is_cached(tmp_path, monkeypatch):
    spec = get_circuit("age_at_least")
    report = compile_circuit(spec, tmp_path)
    assert (report.constraints, report.public_inputs, report.private_inputs) == (346, 4, 2)
    assert {c.component for c in report.components} >= {"commitment", "age", "binding"}
    assert sum(c.constraints for c in report.components) == 346
    assert report.circuit_hash == spec.circuit_hash
    assert str(tmp_path / "age_at_least" / spec.circuit_hash[:16]) in report.r1cs_path
    check_budget(report, spec)

    def no_circom(*_args: object) -> None:
        raise AssertionError("circom2 ran although the output is cached")

    monkeypatch.setattr(compiler, "_run_circom", no_circom)
    assert compile_circuit(spec, tmp_path) == report


def test_budget_exceeded_names_the_numbers(clinician_report):
    tight = dataclasses.replace(get_circuit("clinician_access"), budget=5000)
    with pytest.raises(BudgetExceeded, match="5907 constraints, over its budget of 5000 by 907"):
        check_budget(clinician_report, tight)


def test_compile_errors_are_circuit_errors(tmp_path):
    src = tmp_path / "bad.circom"
    src.write_text("pragma circom 2.0.0;\ntemplate T() { signal input a; a === ; }\n")
    with pytest.raises(CircuitError, match="could not compile bad"):
        compile_circuit(CircuitSpec("bad", src, ("a",), (), budget=1), tmp_path / "build")


def test_spec_public_count_must_match_the_compiled_circuit(tmp_path):
    src = tmp_path / "two.circom"
    src.write_text(
        "pragma circom 2.0.0;\ntemplate T() { signal input a; signal input b; a * a === b; }\n"
        "component main {public [a, b]} = T();\n"
    )
    with pytest.raises(CircuitError, match="2 public inputs; the spec lists 1"):
        compile_circuit(CircuitSpec("two", src, ("a",), ("b",), budget=5), tmp_path / "build")


def test_parse_r1cs_rejects_garbage():
    with pytest.raises(CircuitError):
        parse_r1cs(b"nope" + bytes(20))
    with pytest.raises(CircuitError):
        parse_r1cs(b"r1cs" + (1).to_bytes(4, "little") + (1).to_bytes(4, "little"))
