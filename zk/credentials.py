"""Clinician credentials and the inputs of the ClinicianAccess and AgeAtLeast circuits.

A credential is (secret, hospitalId, role, licenceExpiry); its Poseidon commitment is the
leaf the issuing hospital adds to the on-chain credential registry. Everything here follows
the encodings the contracts recompute (see the design notes in ``zk/circuits``):
signalHash = keccak(signal) >> 8, externalNullifier = keccak(recordId || signal) >> 8,
nullifierHash = Poseidon(externalNullifier, secret).
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

from zk.exceptions import InputError
from zk.field import R, hash_to_field, require_field_element
from zk.merkle import MerklePath
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
NROLES = len(ROLES)  # the circuit's Num2Bits(16) on allowedRoles
ALL_ROLES_MASK = (1 << NROLES) - 1
MAX_LICENCE_EXPIRY = 1 << 64  # Num2Bits(64) range checks on licenceExpiry / currentTime
MAX_HOSPITAL_ID = 1 << 160  # an EVM address
MAX_MIN_AGE = 1 << 8
MAX_DATE = 1 << 32
SIGNAL_BYTES = 32
CREDENTIAL_FORMAT = "emr-node/credential/v1"

_ROLE_INDEX = {name: i for i, name in enumerate(ROLES)}


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
    """allowedRoles bitmask: bit i set iff role i is allowed."""
    if isinstance(roles, (str, bytes)):
        raise InputError("roles_mask takes a collection of roles, not one string")
    mask = 0
    for role in roles:
        mask |= 1 << role_index(role)
    return mask


def roles_from_mask(mask: int) -> list[str]:
    if isinstance(mask, bool) or not isinstance(mask, int) or not 0 <= mask <= ALL_ROLES_MASK:
        raise InputError("allowedRoles must be a 16-bit mask")
    return [name for i, name in enumerate(ROLES) if mask >> i & 1]


def _mask(allowed_roles: int | Iterable[str | int]) -> int:
    if isinstance(allowed_roles, int) and not isinstance(allowed_roles, bool):
        roles_from_mask(allowed_roles)  # validates
        return allowed_roles
    return roles_mask(allowed_roles)  # type: ignore[arg-type]


# -- hashes the contracts recompute ---------------------------------------------------------


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != SIGNAL_BYTES:
        raise InputError(f"{what} must be {SIGNAL_BYTES} bytes")
    return bytes(value)


def signal_hash(signal: bytes) -> int:
    """uint256(keccak256(abi.encodePacked(bytes32 signal))) >> 8."""
    return hash_to_field(_bytes32(signal, "signal"))


def external_nullifier(record_id: bytes, signal: bytes) -> int:
    """uint256(keccak256(abi.encodePacked(bytes32 recordId, bytes32 signal))) >> 8: one
    nullifier per (record, request), so a proof cannot be replayed for another request."""
    return hash_to_field(_bytes32(record_id, "record id") + _bytes32(signal, "signal"))


def nullifier_hash(external_nullifier: int, secret: int) -> int:
    return poseidon(
        [
            require_field_element(external_nullifier, "external nullifier"),
            require_field_element(secret, "secret"),
        ]
    )


def _int_or_address(value: int | str, what: str) -> int:
    if isinstance(value, str):
        text = value.lower().removeprefix("0x")
        if len(text) != 40:
            raise InputError(f"{what} must be an integer or a 20-byte hex address")
        try:
            return int(text, 16)
        except ValueError:
            raise InputError(f"{what} must be an integer or a 20-byte hex address") from None
    return value


def _require_range(value: int, bound: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
        raise InputError(f"{what} out of range")
    return value


# -- credentials -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A clinician's credential. ``secret`` never leaves the clinician's device."""

    secret: int = field(repr=False)
    hospital_id: int
    role: int
    licence_expiry: int

    def __post_init__(self) -> None:
        require_field_element(self.secret, "secret")
        if self.secret == 0:
            raise InputError("secret must be non-zero")
        _require_range(self.hospital_id, MAX_HOSPITAL_ID, "hospital id")
        object.__setattr__(self, "role", role_index(self.role))
        _require_range(self.licence_expiry, MAX_LICENCE_EXPIRY, "licence expiry")

    @classmethod
    def generate(cls, hospital_id: int | str, role: str | int, licence_expiry: int) -> Credential:
        """A fresh credential with a uniformly random secret in [1, R)."""
        return cls(
            secret=1 + secrets.randbelow(R - 1),
            hospital_id=_int_or_address(hospital_id, "hospital id"),
            role=role_index(role),
            licence_expiry=licence_expiry,
        )

    @property
    def commitment(self) -> int:
        """The registry leaf: Poseidon(secret, hospitalId, role, licenceExpiry)."""
        return poseidon([self.secret, self.hospital_id, self.role, self.licence_expiry])

    @property
    def role_name(self) -> str:
        return ROLES[self.role]

    @property
    def hospital_address(self) -> str:
        return "0x" + self.hospital_id.to_bytes(20, "big").hex()

    def nullifier_hash(self, external_nullifier: int) -> int:
        return nullifier_hash(external_nullifier, self.secret)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CREDENTIAL_FORMAT,
            "secret": str(self.secret),
            "hospitalId": self.hospital_address,
            "role": self.role_name,
            "licenceExpiry": self.licence_expiry,
            "commitment": str(self.commitment),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Credential:
        try:
            obj = json.loads(data) if isinstance(data, str) else dict(data)
            if obj.get("format") != CREDENTIAL_FORMAT:
                raise InputError("not a credential file")
            credential = cls(
                secret=int(obj["secret"]),
                hospital_id=_int_or_address(obj["hospitalId"], "hospital id"),
                role=role_index(obj["role"]),
                licence_expiry=int(obj["licenceExpiry"]),
            )
        except InputError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InputError("malformed credential") from None
        if "commitment" in obj and str(obj["commitment"]) != str(credential.commitment):
            raise InputError("credential commitment does not match its fields")
        return credential

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the credential readable by its owner only (0600), atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".credential-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_json(), fh, indent=2)
                fh.write("\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Credential:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InputError(f"cannot read credential file: {exc.strerror}") from None
        return cls.from_json(text)


# -- circuit inputs --------------------------------------------------------------------------


def clinician_access_inputs(
    credential: Credential,
    path: MerklePath,
    root: int,
    allowed_roles: int | Iterable[str | int],
    current_time: int,
    record_id: bytes,
    signal: bytes,
    *,
    check: bool = True,
) -> dict[str, int | list[int]]:
    """Every signal of ClinicianAccess(20, 16) by name, public ones first in circuit order.

    With ``check`` (the default) inputs the circuit would reject raise InputError here,
    naming the rule but no private value; tests pass ``check=False`` to feed bad witnesses.
    """
    mask = _mask(allowed_roles)
    require_field_element(root, "root")
    _require_range(current_time, MAX_LICENCE_EXPIRY, "current time")
    ext = external_nullifier(record_id, signal)
    if check:
        if path.root(credential.commitment) != root:
            raise InputError("the Merkle path does not lead from the credential to the root")
        if not mask >> credential.role & 1:
            raise InputError("the credential's role is not allowed")
        if not current_time < credential.licence_expiry:
            raise InputError("the credential's licence has expired")
    return {
        "root": root,
        "allowedRoles": mask,
        "currentTime": current_time,
        "externalNullifier": ext,
        "nullifierHash": nullifier_hash(ext, credential.secret),
        "signalHash": signal_hash(signal),
        "secret": credential.secret,
        "hospitalId": credential.hospital_id,
        "role": credential.role,
        "licenceExpiry": credential.licence_expiry,
        "pathElements": list(path.siblings),
        "pathIndices": list(path.indices),
    }


def yyyymmdd(day: date) -> int:
    """A date as the YYYYMMDD integer the AgeAtLeast circuit compares."""
    return day.year * 10000 + day.month * 100 + day.day


def _require_date(value: int, what: str) -> int:
    _require_range(value, MAX_DATE, what)
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
    _require_range(min_age, MAX_MIN_AGE, "minimum age")
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
