"""The policy AST: one ``Policy`` node, built directly from Python or parsed from the text
grammar (``zk.policy.grammar``), validated once here so both front ends agree."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from zk.exceptions import CircuitError

# Same rule as the node's record categories (node/api/routers/records.py).
CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
MAX_HOSPITALS = 16


class PolicyError(CircuitError):
    """A policy is malformed: unknown role, empty role set, bad category, bad syntax..."""


def role_names() -> tuple[str, ...]:
    """The credential roles by index (``zk.credentials.ROLES``)."""
    from zk.credentials import ROLES

    if isinstance(ROLES, dict):
        return tuple(sorted(ROLES, key=ROLES.__getitem__))
    return tuple(ROLES)


def _hospital_id(value: object) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            raise PolicyError(f"hospital {value!r} is not an integer member id") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        raise PolicyError("a hospital is a Consortium member id in 1..2^32-1")
    return value


@dataclass(frozen=True)
class Policy:
    """Who may read records of one category.

    ``roles``: the consortium's category policy (the mask a Consortium call proposal sets on
    the gate). The circuit itself takes the request's mask in its public context (the
    patient's class consent AND this policy), so roles never change the circuit.
    ``licence_valid``: require currentTime < expiry. ``hospitals``: if set, the credential's
    issuing hospital must also be one of these member ids (public inputs
    ``allowedHospital0..``, after the four of clinician_access).
    """

    name: str
    category: str
    roles: frozenset[str]
    licence_valid: bool = True
    hospitals: frozenset[int] | None = None

    def __init__(
        self,
        name: str,
        category: str,
        roles: Iterable[str],
        licence_valid: bool = True,
        hospitals: Iterable[int | str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not NAME.match(name):
            raise PolicyError(f"bad policy name {name!r} (lower-case identifier)")
        if not isinstance(category, str) or not CATEGORY.match(category):
            raise PolicyError(f"bad category {category!r} (lower-case, [a-z0-9_.-], <= 64)")
        if isinstance(roles, str):
            roles = [roles]
        role_set = frozenset(roles)
        if not role_set:
            raise PolicyError(f"policy {name}: no roles allowed")
        known = role_names()
        unknown = sorted(r for r in role_set if r not in known)
        if unknown:
            raise PolicyError(
                f"policy {name}: unknown role {unknown[0]!r} (known: {', '.join(known)})"
            )
        hospital_set: frozenset[int] | None = None
        if hospitals is not None:
            if isinstance(hospitals, str | int):
                hospitals = [hospitals]
            hospital_set = frozenset(_hospital_id(h) for h in hospitals)
            if not 1 <= len(hospital_set) <= MAX_HOSPITALS:
                raise PolicyError(f"policy {name}: 1 to {MAX_HOSPITALS} hospitals, or none")
        if not isinstance(licence_valid, bool):
            raise PolicyError(f"policy {name}: licence_valid is a boolean")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "roles", role_set)
        object.__setattr__(self, "licence_valid", licence_valid)
        object.__setattr__(self, "hospitals", hospital_set)

    @property
    def allowed_roles(self) -> int:
        """The 16-bit mask: bit i set iff role i is allowed."""
        names = role_names()
        return sum(1 << names.index(r) for r in self.roles)

    @property
    def is_default(self) -> bool:
        """Exactly clinician_access: licence check, no hospital set."""
        return self.licence_valid and self.hospitals is None
