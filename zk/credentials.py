"""The v2 credential encodings (SPEC-zk-v2 section 1) and the circuits' input builders.

The clinician keeps a secret ``s`` and hands its hospital only ``idc = Poseidon1(s)``. The
hospital's node sets role and licence expiry from its directory, and CredentialRegistry builds
the leaf on chain from the issuer's member id:

    attrs = hospitalId | role << 32 | expiry << 36          (uint32, 0..15, uint40)
    leaf  = Poseidon2(idc, attrs)

An anonymous read proves membership of that leaf against public values the gate recomputes:

    context        = currentTime | mask << 40 | classHospital << 56 | signalTag << 88
    signalTag      = keccak256(bytes32 signal) >> 104
    scope          = keccak256(uint256 chainId, address gate, bytes32 recordId, uint64 epoch) >> 8
    epoch          = currentTime // epochLength
    epochNullifier = Poseidon2(scope, s)
    requestId      = keccak256(bytes32 recordId, bytes32 signal)      (gate's replay guard)

Every function here is pure and range checks its arguments (``InputError``).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from eth_utils import keccak

from zk.exceptions import InputError
from zk.field import R, hash_to_field, require_field_element
from zk.merkle import MAX_DEPTH, LeanIMTProof
from zk.poseidon import poseidon

ROLES: tuple[str, ...] = (
    "physician",
    "nurse",
    "pharmacist",
    "radiologist",
    "lab_technician",
    "therapist",
    "midwife",
    "paramedic",
    "psychologist",
    "dentist",
    "dietitian",
    "social_worker",
    "researcher",
    "admin_clerk",
    "auditor",
    "emergency",
)
NROLES = len(ROLES)  # 16: role is 4 bits, the mask 16
ALL_ROLES_MASK = (1 << NROLES) - 1
MAX_HOSPITAL_ID = (1 << 32) - 1  # Consortium member ids are uint32, from 1
MAX_TIME = 1 << 40  # licence expiry and current time are uint40
MAX_EPOCH = 1 << 64
DEFAULT_EPOCH_LENGTH = 86_400
CONTEXT_BITS = 240
SIGNAL_TAG_SHIFT = 104  # keccak >> 104: 152 bits, context bits 88..239
MAX_MIN_AGE = 1 << 8
MAX_DATE = 1 << 32
BYTES32 = 32
IDENTITY_FORMAT = "emr-node/identity/v1"

_ROLE_INDEX = {name: i for i, name in enumerate(ROLES)}


# -- small checks ----------------------------------------------------------------------------


def _require_range(value: int, low: int, high: int, what: str) -> int:
    """``value`` if it is an int in [low, high], else InputError naming ``what`` only."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{what} out of range")
    return value


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != BYTES32:
        raise InputError(f"{what} must be {BYTES32} bytes")
    return bytes(value)


def _address(value: str | bytes | int, what: str = "gate address") -> bytes:
    if isinstance(value, (bytes, bytearray)) and len(value) == 20:
        return bytes(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 160:
        return value.to_bytes(20, "big")
    if isinstance(value, str):
        text = value.lower().removeprefix("0x")
        if len(text) == 40:
            try:
                return bytes.fromhex(text)
            except ValueError:
                pass
    raise InputError(f"{what} must be a 20-byte address")


# -- roles -----------------------------------------------------------------------------------


def role_index(role: str | int) -> int:
    """Index of a role given by name or index; InputError if unknown."""
    if isinstance(role, bool):
        raise InputError("unknown role")
    if isinstance(role, int):
        if 0 <= role < NROLES:
            return role
        raise InputError("unknown role")
    if isinstance(role, str) and role in _ROLE_INDEX:
        return _ROLE_INDEX[role]
    raise InputError("unknown role")


def role_name(role: str | int) -> str:
    return ROLES[role_index(role)]


def roles_mask(roles: Iterable[str | int]) -> int:
    """16-bit roles mask: bit i set iff role i is in ``roles``."""
    if isinstance(roles, (str, bytes)):
        raise InputError("roles_mask takes a collection of roles, not one string")
    mask = 0
    for role in roles:
        mask |= 1 << role_index(role)
    return mask


def roles_from_mask(mask: int) -> list[str]:
    _require_range(mask, 0, ALL_ROLES_MASK, "roles mask")
    return [name for i, name in enumerate(ROLES) if mask >> i & 1]


# -- section 1 encodings ---------------------------------------------------------------------


def require_secret(secret: int) -> int:
    """A clinician secret: a field element in [1, r)."""
    require_field_element(secret, "secret")
    if secret == 0:
        raise InputError("secret must be non-zero")
    return secret


def identity_commitment(secret: int) -> int:
    """idc = Poseidon1(secret): all a clinician ever hands to its hospital."""
    return poseidon([require_secret(secret)])


def credential_attributes(hospital_id: int, role: str | int, expiry: int) -> int:
    """attrs = hospitalId | role << 32 | expiry << 36 (76 bits)."""
    _require_range(hospital_id, 1, MAX_HOSPITAL_ID, "hospital id")
    _require_range(expiry, 0, MAX_TIME - 1, "licence expiry")
    return hospital_id | role_index(role) << 32 | expiry << 36


def split_attributes(attrs: int) -> tuple[int, int, int]:
    """(hospital_id, role, expiry) of an ``attrs`` value."""
    _require_range(attrs, 0, (1 << 76) - 1, "credential attributes")
    return attrs & 0xFFFFFFFF, attrs >> 32 & 0xF, attrs >> 36


def credential_leaf(idc: int, attrs: int) -> int:
    """leaf = Poseidon2(idc, attrs), as CredentialRegistry computes it."""
    require_field_element(idc, "identity commitment")
    if idc == 0:
        raise InputError("identity commitment must be non-zero")
    _require_range(attrs, 0, (1 << 76) - 1, "credential attributes")
    return poseidon([idc, attrs])


def signal_tag(signal: bytes) -> int:
    """uint256(keccak256(abi.encodePacked(bytes32 signal))) >> 104 (152 bits)."""
    return int.from_bytes(keccak(_bytes32(signal, "signal")), "big") >> SIGNAL_TAG_SHIFT


def access_context(current_time: int, mask: int, class_hospital: int, signal: bytes) -> int:
    """context = currentTime | mask << 40 | classHospital << 56 | signalTag << 88 (< 2^240)."""
    _require_range(current_time, 0, MAX_TIME - 1, "current time")
    _require_range(mask, 0, ALL_ROLES_MASK, "roles mask")
    _require_range(class_hospital, 0, MAX_HOSPITAL_ID, "class hospital")
    return current_time | mask << 40 | class_hospital << 56 | signal_tag(signal) << 88


def split_context(context: int) -> tuple[int, int, int, int]:
    """(current_time, mask, class_hospital, signal_tag) of a context value."""
    _require_range(context, 0, (1 << CONTEXT_BITS) - 1, "context")
    return (
        context & (MAX_TIME - 1),
        context >> 40 & ALL_ROLES_MASK,
        context >> 56 & MAX_HOSPITAL_ID,
        context >> 88,
    )


def epoch_of(current_time: int, epoch_length: int = DEFAULT_EPOCH_LENGTH) -> int:
    """The gate's epoch: currentTime // epochLength."""
    _require_range(current_time, 0, MAX_TIME - 1, "current time")
    _require_range(epoch_length, 1, MAX_TIME, "epoch length")
    return current_time // epoch_length


def access_scope(
    chain_id: int,
    gate: str | bytes | int,
    record_id: bytes,
    patient: str | bytes | int,
    category: bytes,
    epoch: int,
) -> int:
    """keccak256(abi.encodePacked(uint256 chainId, address gate, bytes32 recordId,
    address patient, bytes32 category, uint64 epoch)) >> 8: binds a proof to one chain,
    gate, record (with the patient and category its relayer names: neither can be swapped
    for another patient's consent or another category's policy) and epoch."""
    _require_range(chain_id, 0, (1 << 256) - 1, "chain id")
    _require_range(epoch, 0, MAX_EPOCH - 1, "epoch")
    packed = (
        chain_id.to_bytes(32, "big")
        + _address(gate)
        + _bytes32(record_id, "record id")
        + _address(patient, "patient address")
        + _bytes32(category, "category hash")
        + epoch.to_bytes(8, "big")
    )
    return hash_to_field(packed)


def epoch_nullifier(scope: int, secret: int) -> int:
    """Poseidon2(scope, secret): one value per credential, record and epoch."""
    return poseidon([require_field_element(scope, "scope"), require_secret(secret)])


def request_id(record_id: bytes, signal: bytes) -> bytes:
    """keccak256(abi.encodePacked(bytes32 recordId, bytes32 signal)): the gate's replay key."""
    return keccak(_bytes32(record_id, "record id") + _bytes32(signal, "signal"))


def signal_hash(signal: bytes) -> int:
    """uint256(keccak256(abi.encodePacked(bytes32 signal))) >> 8 (AgeAtLeast's signalHash)."""
    return hash_to_field(_bytes32(signal, "signal"))


# -- the clinician's identity and issued credential ------------------------------------------


def _write_private_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` readable by its owner only (0600), atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".identity-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _read_identity_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"cannot read identity file: {exc.strerror}") from None
    except ValueError:
        raise InputError("malformed identity file") from None
    if not isinstance(obj, dict) or obj.get("format") != IDENTITY_FORMAT:
        raise InputError("not an identity file")
    return obj


@dataclass(frozen=True)
class Identity:
    """A clinician's secret. It never leaves the clinician's device; ``commitment`` does."""

    secret: int = field(repr=False)

    def __post_init__(self) -> None:
        require_secret(self.secret)

    @classmethod
    def generate(cls) -> Identity:
        """A uniformly random secret in [1, r)."""
        return cls(1 + secrets.randbelow(R - 1))

    @property
    def commitment(self) -> int:
        """idc = Poseidon1(secret)."""
        return identity_commitment(self.secret)

    def epoch_nullifier(self, scope: int) -> int:
        return epoch_nullifier(scope, self.secret)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": IDENTITY_FORMAT,
            "secret": str(self.secret),
            "identityCommitment": str(self.commitment),
            "credential": None,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Identity:
        try:
            identity = cls(int(obj["secret"]))
        except InputError:
            raise
        except (ValueError, TypeError, KeyError):
            raise InputError("malformed identity file") from None
        if str(obj.get("identityCommitment", identity.commitment)) != str(identity.commitment):
            raise InputError("identity commitment does not match the secret")
        return identity

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the identity (no credential yet) to a 0600 JSON file."""
        return _write_private_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """The identity of an identity file (issued or not)."""
        return cls.from_json(_read_identity_file(path))


@dataclass(frozen=True)
class IssuedCredential:
    """An identity with the attributes its hospital issued (read back from the registry's
    ``CredentialIssued`` event or the node's answer): the clinician can not choose them."""

    identity: Identity
    hospital_id: int
    role: int
    licence_expiry: int

    def __post_init__(self) -> None:
        if not isinstance(self.identity, Identity):
            raise InputError("an issued credential needs an Identity")
        object.__setattr__(self, "role", role_index(self.role))
        credential_attributes(self.hospital_id, self.role, self.licence_expiry)  # validates

    @property
    def attributes(self) -> int:
        return credential_attributes(self.hospital_id, self.role, self.licence_expiry)

    @property
    def leaf(self) -> int:
        """Poseidon2(idc, attrs): the registry leaf."""
        return credential_leaf(self.identity.commitment, self.attributes)

    @property
    def role_name(self) -> str:
        return ROLES[self.role]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.identity.to_json(),
            "credential": {
                "hospitalId": self.hospital_id,
                "role": self.role_name,
                "licenceExpiry": self.licence_expiry,
                "leaf": str(self.leaf),
            },
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> IssuedCredential:
        identity = Identity.from_json(obj)
        cred = obj.get("credential")
        if cred is None:
            raise InputError("no credential has been issued to this identity yet")
        try:
            issued = cls(
                identity,
                int(cred["hospitalId"]),
                role_index(cred["role"]),
                int(cred["licenceExpiry"]),
            )
        except InputError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InputError("malformed identity file") from None
        if "leaf" in cred and str(cred["leaf"]) != str(issued.leaf):
            raise InputError("credential leaf does not match its fields")
        return issued

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write identity and credential to the same 0600 JSON file."""
        return _write_private_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IssuedCredential:
        return cls.from_json(_read_identity_file(path))


# -- circuit inputs --------------------------------------------------------------------------


def clinician_access_inputs(
    identity: Identity,
    issued: IssuedCredential,
    proof: LeanIMTProof,
    root: int,
    current_time: int,
    mask: int,
    class_hospital: int,
    signal: bytes,
    chain_id: int,
    gate: str | bytes | int,
    record_id: bytes,
    patient: str | bytes | int,
    category: bytes,
    epoch_length: int = DEFAULT_EPOCH_LENGTH,
    *,
    check: bool = True,
) -> dict[str, int | list[int]]:
    """Every signal of ClinicianAccess(20) by name, public ones first in circuit order.

    ``proof`` is the LeanIMT proof of ``issued.leaf`` (built by the clinician from the public
    tree). With ``check`` (the default) inputs the circuit would reject raise InputError here,
    naming the rule but no private value; tests pass ``check=False`` to feed bad witnesses.
    """
    require_field_element(root, "root")
    context = access_context(current_time, mask, class_hospital, signal)
    scope = access_scope(
        chain_id, gate, record_id, patient, category, epoch_of(current_time, epoch_length)
    )
    if proof.depth > MAX_DEPTH:
        raise InputError(f"the Merkle proof is deeper than {MAX_DEPTH}")
    if check:
        if issued.identity != identity:
            raise InputError("the credential was issued to another identity")
        if proof.leaf != issued.leaf or proof.root != root or not proof.verify():
            raise InputError("the Merkle proof does not lead from the credential to the root")
        if not mask >> issued.role & 1:
            raise InputError("the credential's role is not in the roles mask")
        if class_hospital not in (0, issued.hospital_id):
            raise InputError("the credential was issued by another hospital than the class")
        if not current_time < issued.licence_expiry:
            raise InputError("the credential's licence has expired")
    return {
        "root": root,
        "context": context,
        "scope": scope,
        "epochNullifier": epoch_nullifier(scope, identity.secret),
        "secret": identity.secret,
        "hospitalId": issued.hospital_id,
        "role": issued.role,
        "licenceExpiry": issued.licence_expiry,
        "depth": proof.depth,
        "index": proof.index,
        "siblings": proof.padded_siblings(MAX_DEPTH),
    }


def yyyymmdd(day: date) -> int:
    """A date as the YYYYMMDD integer the AgeAtLeast circuit compares."""
    return day.year * 10000 + day.month * 100 + day.day


def _require_date(value: int, what: str) -> int:
    _require_range(value, 0, MAX_DATE - 1, what)
    try:
        date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        raise InputError(f"{what} is not a YYYYMMDD date") from None
    return value


def dob_commitment(date_of_birth: int, salt: int) -> int:
    """Poseidon(dateOfBirth, salt): what a hospital attests to for AgeAtLeast."""
    return poseidon(
        [_require_date(date_of_birth, "date of birth"), require_field_element(salt, "salt")]
    )


def age_inputs(
    date_of_birth: int,
    salt: int,
    current_date: int,
    min_age: int,
    signal: bytes,
    *,
    check: bool = True,
) -> dict[str, int]:
    """Every signal of AgeAtLeast by name, public ones first in circuit order."""
    commitment = dob_commitment(date_of_birth, salt)
    _require_date(current_date, "current date")
    _require_range(min_age, 0, MAX_MIN_AGE - 1, "minimum age")
    if check and date_of_birth + min_age * 10000 > current_date:
        raise InputError("the age requirement is not met")
    return {
        "dobCommitment": commitment,
        "currentDate": current_date,
        "minAge": min_age,
        "signalHash": signal_hash(signal),
        "dateOfBirth": date_of_birth,
        "salt": salt,
    }
