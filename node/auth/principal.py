"""Who is calling: a hospital system (API token with a role) or a person (wallet session)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # manages tokens; may do everything a hospital system may
    HOSPITAL = "hospital"  # the hospital's systems: upload, list, break-glass
    AUDITOR = "auditor"  # reads the audit trail and verifies records


@dataclass(frozen=True, slots=True)
class TokenPrincipal:
    name: str
    role: Role
    token_id: str = ""  # the token's public id (throttling, logs); never the token itself

    def has(self, *roles: Role) -> bool:
        return self.role is Role.ADMIN or self.role in roles


@dataclass(frozen=True, slots=True)
class WalletPrincipal:
    address: str  # checksummed; proven by a Sign-In with Ethereum signature


Principal = TokenPrincipal | WalletPrincipal
