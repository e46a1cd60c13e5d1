"""zk.credentials: roles, commitments, the hashes contracts recompute and circuit inputs."""

from __future__ import annotations

import json
import stat
from datetime import date
from pathlib import Path

import pytest
from eth_utils import keccak

from zk.credentials import (
    ALL_ROLES_MASK,
    NROLES,
    ROLES,
    Credential,
    age_inputs,
    clinician_access_inputs,
    dob_commitment,
    external_nullifier,
    nullifier_hash,
    role_index,
    role_name,
    roles_from_mask,
    roles_mask,
    signal_hash,
    yyyymmdd,
)
from zk.exceptions import InputError
from zk.field import R
from zk.merkle import CredentialTree
from zk.poseidon import poseidon

HOSPITAL = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
EXPIRY = 1_900_000_000
NOW = 1_750_000_000
RECORD = bytes(range(32))
SIGNAL = bytes(range(32, 64))


def test_roles_table_is_the_agreed_one() -> None:
    assert NROLES == 16
    assert ROLES[0] == "physician"
    assert ROLES[1] == "nurse"
    assert ROLES[7] == "paramedic"
    assert ROLES[12] == "researcher"
    assert ROLES[15] == "emergency"
    assert len(set(ROLES)) == 16
    assert [role_index(r) for r in ROLES] == list(range(16))


def test_roles_mask() -> None:
    assert roles_mask([]) == 0
    assert roles_mask(["physician"]) == 1
    assert roles_mask(["nurse", "physician", "nurse"]) == 0b11
    assert roles_mask(["emergency", 2]) == (1 << 15) | (1 << 2)
    assert roles_mask(ROLES) == ALL_ROLES_MASK == 0xFFFF
    assert roles_from_mask(0b101) == ["physician", "pharmacist"]
    assert role_name(3) == "radiologist"


@pytest.mark.parametrize("bad", ["surgeon", "Physician", 16, -1, True, None])
def test_unknown_roles_rejected(bad: object) -> None:
    with pytest.raises(InputError):
        role_index(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        roles_mask(["nurse", bad])  # type: ignore[list-item]


def test_roles_mask_rejects_a_bare_string_and_bad_masks() -> None:
    with pytest.raises(InputError):
        roles_mask("nurse")
    for bad in (-1, 1 << 16, True):
        with pytest.raises(InputError):
            roles_from_mask(bad)


def test_commitment_is_poseidon_of_the_fields() -> None:
    cred = Credential(secret=123, hospital_id=int(HOSPITAL, 16), role=1, licence_expiry=EXPIRY)
    assert cred.commitment == poseidon([123, int(HOSPITAL, 16), 1, EXPIRY])
    assert cred.role_name == "nurse"
    assert cred.hospital_address == HOSPITAL.lower()
    assert Credential(123, int(HOSPITAL, 16), "nurse", EXPIRY) == cred  # type: ignore[arg-type]


def test_generate_draws_fresh_secrets() -> None:
    a = Credential.generate(HOSPITAL, "physician", EXPIRY)
    b = Credential.generate(int(HOSPITAL, 16), 0, EXPIRY)
    assert a.hospital_id == b.hospital_id == int(HOSPITAL, 16)
    assert a.role == b.role == 0
    assert 0 < a.secret < R and a.secret != b.secret
    assert a.commitment != b.commitment


def test_secret_not_in_repr() -> None:
    cred = Credential(secret=987654321987654321, hospital_id=1, role=0, licence_expiry=EXPIRY)
    assert "987654321987654321" not in repr(cred)


@pytest.mark.parametrize(
    "fields",
    [
        {"secret": 0},
        {"secret": R},
        {"hospital_id": 1 << 160},
        {"hospital_id": -1},
        {"role": 16},
        {"role": "surgeon"},
        {"licence_expiry": 1 << 64},
        {"licence_expiry": -5},
    ],
)
def test_invalid_credentials_rejected(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"secret": 5, "hospital_id": 1, "role": 0, "licence_expiry": 10}
    with pytest.raises(InputError):
        Credential(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("hospital", ["0x1234", "not-an-address-not-an-address-not-an-add"])
def test_generate_rejects_bad_addresses(hospital: str) -> None:
    with pytest.raises(InputError):
        Credential.generate(hospital, "nurse", EXPIRY)


def test_json_round_trip_and_tamper_detection() -> None:
    cred = Credential.generate(HOSPITAL, "pharmacist", EXPIRY)
    data = cred.to_json()
    assert data["role"] == "pharmacist"
    assert data["commitment"] == str(cred.commitment)
    assert Credential.from_json(data) == cred
    assert Credential.from_json(json.dumps(data)) == cred
    with pytest.raises(InputError, match="commitment"):
        Credential.from_json({**data, "role": "nurse"})
    for broken in ({**data, "format": "x"}, {**data, "secret": "zz"}, "[1, 2", {"format": 1}):
        with pytest.raises(InputError):
            Credential.from_json(broken)  # type: ignore[arg-type]


def test_save_is_private_and_loads_back(tmp_path: Path) -> None:
    cred = Credential.generate(HOSPITAL, "midwife", EXPIRY)
    target = cred.save(tmp_path / "keys" / "cred.json")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert Credential.load(target) == cred
    other = Credential.generate(HOSPITAL, "nurse", EXPIRY)
    other.save(target)  # overwrite keeps 0600
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert Credential.load(target) == other
    assert [p.name for p in target.parent.iterdir()] == ["cred.json"]  # no temp leftovers
    with pytest.raises(InputError):
        Credential.load(tmp_path / "missing.json")


def test_hashes_match_the_solidity_encodings() -> None:
    assert signal_hash(SIGNAL) == int.from_bytes(keccak(SIGNAL), "big") >> 8
    assert external_nullifier(RECORD, SIGNAL) == int.from_bytes(keccak(RECORD + SIGNAL), "big") >> 8
    assert external_nullifier(RECORD, SIGNAL) != external_nullifier(SIGNAL, RECORD)
    assert signal_hash(SIGNAL) < 1 << 248
    assert nullifier_hash(7, 9) == poseidon([7, 9])
    for bad in (b"", bytes(31), bytes(33), "00" * 32):
        with pytest.raises(InputError):
            signal_hash(bad)  # type: ignore[arg-type]
        with pytest.raises(InputError):
            external_nullifier(bad, SIGNAL)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        nullifier_hash(R, 1)


def _tree_with(cred: Credential) -> CredentialTree:
    tree = CredentialTree()
    tree.insert_many([11, 22, cred.commitment, 33])
    return tree


def test_clinician_access_inputs() -> None:
    cred = Credential.generate(HOSPITAL, "nurse", EXPIRY)
    tree = _tree_with(cred)
    path = tree.path(2)
    inputs = clinician_access_inputs(
        cred, path, tree.root, ["physician", "nurse"], NOW, RECORD, SIGNAL
    )
    assert list(inputs) == [
        "root",
        "allowedRoles",
        "currentTime",
        "externalNullifier",
        "nullifierHash",
        "signalHash",
        "secret",
        "hospitalId",
        "role",
        "licenceExpiry",
        "pathElements",
        "pathIndices",
    ]
    ext = external_nullifier(RECORD, SIGNAL)
    assert inputs["root"] == tree.root
    assert inputs["allowedRoles"] == 0b11
    assert inputs["currentTime"] == NOW
    assert inputs["externalNullifier"] == ext
    assert inputs["nullifierHash"] == poseidon([ext, cred.secret]) == cred.nullifier_hash(ext)
    assert inputs["signalHash"] == signal_hash(SIGNAL)
    assert inputs["secret"] == cred.secret
    assert inputs["hospitalId"] == int(HOSPITAL, 16)
    assert inputs["role"] == 1
    assert inputs["licenceExpiry"] == EXPIRY
    assert inputs["pathElements"] == list(path.siblings) and len(path.siblings) == 20
    assert inputs["pathIndices"] == [0, 1] + [0] * 18
    # A mask given as an int is taken as is.
    again = clinician_access_inputs(cred, path, tree.root, 0b11, NOW, RECORD, SIGNAL)
    assert again == inputs


def test_clinician_access_inputs_checks_the_statement() -> None:
    cred = Credential.generate(HOSPITAL, "nurse", EXPIRY)
    tree = _tree_with(cred)
    path, root = tree.path(2), tree.root
    args = (RECORD, SIGNAL)
    with pytest.raises(InputError, match="role"):
        clinician_access_inputs(cred, path, root, ["physician"], NOW, *args)
    with pytest.raises(InputError, match="expired"):
        clinician_access_inputs(cred, path, root, ["nurse"], EXPIRY, *args)
    with pytest.raises(InputError, match="Merkle"):
        clinician_access_inputs(cred, tree.path(1), root, ["nurse"], NOW, *args)
    tree.remove(2)
    with pytest.raises(InputError, match="Merkle"):
        clinician_access_inputs(cred, path, tree.root, ["nurse"], NOW, *args)
    # check=False hands back the (unsatisfiable) witness for negative circuit tests.
    bad = clinician_access_inputs(cred, path, root, ["physician"], NOW, *args, check=False)
    assert bad["allowedRoles"] == 1 and bad["role"] == 1
    for mask in (1 << 16, -1):
        with pytest.raises(InputError):
            clinician_access_inputs(cred, path, root, mask, NOW, *args)
    with pytest.raises(InputError):
        clinician_access_inputs(cred, path, root, ["nurse"], 1 << 64, *args)
    with pytest.raises(InputError):
        clinician_access_inputs(cred, path, R, ["nurse"], NOW, *args, check=False)


def test_age_inputs() -> None:
    assert yyyymmdd(date(2007, 2, 28)) == 20070228
    inputs = age_inputs(20070228, 42, 20250228, 18, SIGNAL)
    assert inputs == {
        "dobCommitment": poseidon([20070228, 42]),
        "currentDate": 20250228,
        "minAge": 18,
        "signalHash": signal_hash(SIGNAL),
        "dateOfBirth": 20070228,
        "salt": 42,
    }
    assert dob_commitment(20070228, 42) == inputs["dobCommitment"]
    with pytest.raises(InputError, match="age"):
        age_inputs(20070301, 42, 20250228, 18, SIGNAL)  # one day short
    assert age_inputs(20070301, 42, 20250228, 18, SIGNAL, check=False)["minAge"] == 18
    for dob in (20071301, 20070230, -1, 1 << 32):
        with pytest.raises(InputError):
            dob_commitment(dob, 1)
    with pytest.raises(InputError):
        age_inputs(20000101, 1, 20250101, 256, SIGNAL)
    with pytest.raises(InputError):
        dob_commitment(20000101, R)
