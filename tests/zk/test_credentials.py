"""The v2 encodings (SPEC-zk-v2 section 1), the identity file and the circuit input builder."""

from __future__ import annotations

import os
import stat

import pytest
from eth_abi.packed import encode_packed
from eth_utils import keccak

from zk.credentials import (
    ALL_ROLES_MASK,
    IDENTITY_FORMAT,
    MAX_HOSPITAL_ID,
    MAX_TIME,
    ROLES,
    Identity,
    IssuedCredential,
    access_context,
    access_scope,
    age_inputs,
    clinician_access_inputs,
    credential_attributes,
    credential_leaf,
    epoch_nullifier,
    epoch_of,
    identity_commitment,
    request_id,
    role_index,
    roles_from_mask,
    roles_mask,
    signal_hash,
    signal_tag,
    split_attributes,
    split_context,
)
from zk.exceptions import InputError
from zk.field import R
from zk.merkle import LeanIMT
from zk.poseidon import poseidon, poseidon_generic
from zk.testing import CATEGORY, CHAIN_ID, GATE, NOW, PATIENT, RECORD_ID, SIGNAL, access_scenario

SECRET = 123456789


def test_identity_commitment_is_poseidon_of_one_input():
    assert identity_commitment(SECRET) == poseidon([SECRET]) == poseidon_generic([SECRET])
    for bad in (0, R, -1, True):
        with pytest.raises(InputError):
            identity_commitment(bad)


def test_attributes_pack_hospital_role_expiry():
    attrs = credential_attributes(7, "nurse", 1_800_000_000)
    assert attrs == 7 + 1 * 2**32 + 1_800_000_000 * 2**36
    assert split_attributes(attrs) == (7, 1, 1_800_000_000)
    top = credential_attributes(MAX_HOSPITAL_ID, 15, MAX_TIME - 1)
    assert top == 2**76 - 1
    for hospital, role, expiry in [
        (0, 0, 1),  # member ids start at 1
        (2**32, 0, 1),
        (1, 16, 1),
        (1, "surgeon", 1),
        (1, 0, 2**40),
        (1, 0, -1),
    ]:
        with pytest.raises(InputError):
            credential_attributes(hospital, role, expiry)


def test_leaf_is_poseidon_of_commitment_and_attributes():
    idc = identity_commitment(SECRET)
    attrs = credential_attributes(3, "physician", NOW)
    assert credential_leaf(idc, attrs) == poseidon_generic([idc, attrs])
    with pytest.raises(InputError):
        credential_leaf(0, attrs)
    with pytest.raises(InputError):
        credential_leaf(idc, 2**76)


def test_context_packs_time_mask_class_and_signal_tag():
    tag = int.from_bytes(keccak(SIGNAL), "big") >> 104
    assert signal_tag(SIGNAL) == tag and tag < 2**152
    mask = roles_mask(["physician", "nurse"])
    ctx = access_context(NOW, mask, 5, SIGNAL)
    assert ctx == NOW + mask * 2**40 + 5 * 2**56 + tag * 2**88
    assert ctx < 2**240
    assert split_context(ctx) == (NOW, mask, 5, tag)
    for args in [(MAX_TIME, 1, 0), (NOW, ALL_ROLES_MASK + 1, 0), (NOW, 1, 2**32), (-1, 1, 0)]:
        with pytest.raises(InputError):
            access_context(*args, SIGNAL)
    with pytest.raises(InputError):
        access_context(NOW, 1, 0, b"short")


def test_scope_is_keccak_of_packed_chain_gate_record_patient_category_epoch():
    epoch = epoch_of(NOW)
    assert epoch == NOW // 86400 and epoch_of(NOW, 3600) == NOW // 3600
    packed = encode_packed(
        ["uint256", "address", "bytes32", "address", "bytes32", "uint64"],
        [CHAIN_ID, GATE, RECORD_ID, PATIENT, CATEGORY, epoch],
    )
    assert len(packed) == 32 + 20 + 32 + 20 + 32 + 8
    scope = access_scope(CHAIN_ID, GATE, RECORD_ID, PATIENT, CATEGORY, epoch)
    assert scope == int.from_bytes(keccak(packed), "big") >> 8
    # Each part changes the scope: a proof cannot move to another chain, gate, record,
    # patient (another patient's consent), category (another policy) or epoch.
    others = {
        access_scope(CHAIN_ID + 1, GATE, RECORD_ID, PATIENT, CATEGORY, epoch),
        access_scope(CHAIN_ID, "0x" + "6b" * 20, RECORD_ID, PATIENT, CATEGORY, epoch),
        access_scope(CHAIN_ID, GATE, bytes(32), PATIENT, CATEGORY, epoch),
        access_scope(CHAIN_ID, GATE, RECORD_ID, "0x" + "5b" * 20, CATEGORY, epoch),
        access_scope(CHAIN_ID, GATE, RECORD_ID, PATIENT, bytes(32), epoch),
        access_scope(CHAIN_ID, GATE, RECORD_ID, PATIENT, CATEGORY, epoch + 1),
    }
    assert scope not in others and len(others) == 6
    assert (
        access_scope(CHAIN_ID, bytes.fromhex("6a" * 20), RECORD_ID, PATIENT, CATEGORY, epoch)
        == scope
    )
    for bad_gate in ("0x1234", "zz" * 20, 2**160):
        with pytest.raises(InputError):
            access_scope(CHAIN_ID, bad_gate, RECORD_ID, PATIENT, CATEGORY, epoch)
    with pytest.raises(InputError):
        access_scope(CHAIN_ID, GATE, RECORD_ID, "0x12", CATEGORY, epoch)
    with pytest.raises(InputError):
        access_scope(CHAIN_ID, GATE, RECORD_ID, PATIENT, CATEGORY, 2**64)
    with pytest.raises(InputError):
        epoch_of(NOW, 0)


def test_epoch_nullifier_and_request_id():
    scope = access_scope(CHAIN_ID, GATE, RECORD_ID, PATIENT, CATEGORY, epoch_of(NOW))
    assert epoch_nullifier(scope, SECRET) == poseidon_generic([scope, SECRET])
    assert epoch_nullifier(scope, SECRET) != epoch_nullifier(scope + 1, SECRET)
    assert request_id(RECORD_ID, SIGNAL) == keccak(RECORD_ID + SIGNAL)
    assert len(request_id(RECORD_ID, SIGNAL)) == 32
    with pytest.raises(InputError):
        request_id(RECORD_ID, SIGNAL[:31])


def test_roles():
    assert len(ROLES) == 16 and role_index("physician") == 0 and role_index("nurse") == 1
    assert roles_mask(["nurse", 0]) == 0b11
    assert roles_from_mask(0b11) == ["physician", "nurse"]
    with pytest.raises(InputError):
        roles_from_mask(ALL_ROLES_MASK + 1)
    with pytest.raises(InputError):
        roles_mask("nurse")


def test_identity_never_shows_its_secret_and_saves_0600(tmp_path):
    identity = Identity(SECRET)
    assert str(SECRET) not in repr(identity)
    assert Identity.generate() != Identity.generate()
    path = identity.save(tmp_path / "id" / "identity.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Identity.load(path) == identity
    with pytest.raises(InputError, match="no credential"):
        IssuedCredential.load(path)
    for bad in (0, R):
        with pytest.raises(InputError):
            Identity(bad)


def test_issued_credential_round_trips_and_detects_tampering(tmp_path):
    identity = Identity(SECRET)
    issued = IssuedCredential(identity, 4, "radiologist", NOW + 86400)
    assert str(SECRET) not in repr(issued)
    assert issued.leaf == credential_leaf(identity.commitment, issued.attributes)
    path = issued.save(tmp_path / "identity.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = path.read_text()
    assert IDENTITY_FORMAT in data
    assert IssuedCredential.load(path) == issued
    assert Identity.load(path) == identity
    # A clinician editing its role in the file gets a leaf that no longer matches.
    path.write_text(data.replace('"radiologist"', '"physician"'))
    with pytest.raises(InputError, match="leaf does not match"):
        IssuedCredential.load(path)
    path.write_text(data.replace(f'"{SECRET}"', f'"{SECRET + 1}"', 1))
    with pytest.raises(InputError, match="commitment does not match"):
        Identity.load(path)
    (tmp_path / "other.json").write_text('{"format": "something/else"}')
    with pytest.raises(InputError, match="not an identity file"):
        Identity.load(tmp_path / "other.json")
    with pytest.raises(InputError):
        Identity.load(tmp_path / "missing.json")


def _inputs(s, **changes):
    args = {
        "identity": s.identity,
        "issued": s.issued,
        "proof": s.proof,
        "root": s.tree.root,
        "current_time": s.current_time,
        "mask": s.mask,
        "class_hospital": s.class_hospital,
        "signal": s.signal,
        "chain_id": s.chain_id,
        "gate": s.gate,
        "record_id": s.record_id,
        "patient": s.patient,
        "category": s.category,
    }
    return clinician_access_inputs(**{**args, **changes})


def test_clinician_access_inputs_in_circuit_order():
    s = access_scenario("nurse", roles_mask(["physician", "nurse"]), others=4, position=1)
    inputs = _inputs(s)
    assert list(inputs)[:4] == ["root", "context", "scope", "epochNullifier"]
    assert inputs["context"] == access_context(NOW, 0b11, 0, SIGNAL)
    assert inputs["scope"] == access_scope(
        CHAIN_ID, GATE, RECORD_ID, PATIENT, CATEGORY, NOW // 86400
    )
    assert inputs["epochNullifier"] == epoch_nullifier(inputs["scope"], s.identity.secret)
    assert inputs["depth"] == s.proof.depth == 3 and inputs["index"] == s.proof.index
    assert len(inputs["siblings"]) == 20 and inputs["siblings"][3:] == [0] * 17
    assert inputs["hospitalId"] == s.issued.hospital_id and inputs["role"] == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mask": roles_mask(["physician"])}, "not in the roles mask"),
        ({"class_hospital": 99}, "another hospital"),
        ({"current_time": NOW + 400 * 86400}, "expired"),
        ({"root": 12345}, "does not lead"),
        ({"identity": Identity(SECRET)}, "another identity"),
    ],
)
def test_clinician_access_inputs_refuse_what_the_circuit_would(changes, message):
    s = access_scenario("nurse")
    with pytest.raises(InputError, match=message):
        _inputs(s, **changes)
    _inputs(s, check=False, **changes)  # tests may still build them on purpose


def test_clinician_access_inputs_with_a_proof_of_another_leaf():
    s = access_scenario("nurse", others=3)
    other = LeanIMT(s.tree.leaves).generate_proof(0)
    with pytest.raises(InputError, match="does not lead"):
        _inputs(s, proof=other)


def test_age_inputs_keep_working():
    inputs = age_inputs(19800615, 42, 20250615, 18, SIGNAL)
    assert inputs["signalHash"] == signal_hash(SIGNAL) == int.from_bytes(keccak(SIGNAL)) >> 8
    with pytest.raises(InputError, match="not met"):
        age_inputs(20100615, 42, 20250615, 18, SIGNAL)
