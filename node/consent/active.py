"""What is live on a patient's records now: consents for one reader, reader-class consents
and break-glass windows, replayed from the chain's events (grants, revocations, openings)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from node.chain.models import AuditEvent
from node.consent.typed_data import ScopeKind

ActiveKind = Literal["grant", "class", "break_glass"]
_ALL_RECORDS = b"\x00" * 32  # a break-glass over every record of the patient


@dataclass(frozen=True, slots=True)
class ActiveConsent:
    """One consent or break-glass window that lets someone read now.

    ``grantee`` is the reader's address (a grant's grantee, a break-glass's clinician; None
    for a reader class), ``hospital`` a member id (a class's hospital, 0 = any member; the
    member that opened a break-glass), ``roles`` a class's role mask."""

    kind: ActiveKind
    grantee: str | None
    hospital: int | None
    roles: int | None
    scope_kind: ScopeKind
    scope: bytes | None  # None: every record
    granted_at: int
    expires_at: int
    tx_hash: bytes

    @property
    def record_id(self) -> bytes | None:
        return self.scope if self.scope_kind is ScopeKind.RECORD else None


def _raw(value: Any) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def _consent(kind: ActiveKind, e: AuditEvent, hospital: int | None) -> ActiveConsent:
    a = e.args
    scope_kind = ScopeKind(int(a["scopeKind"]))
    return ActiveConsent(
        kind=kind,
        grantee=a.get("grantee"),
        hospital=hospital,
        roles=int(a["roles"]) if kind == "class" else None,
        scope_kind=scope_kind,
        scope=None if scope_kind is ScopeKind.ALL else _raw(a["scope"]),
        granted_at=e.timestamp,
        expires_at=int(a["expiresAt"]),
        tx_hash=e.tx_hash,
    )


def active_consents(
    events: Iterable[AuditEvent], now: int, member_id: Callable[[str], int]
) -> list[ActiveConsent]:
    """Replay one patient's consent events (any order; replayed in chain order): a grant
    lives until it expires or a revocation, or a newer grant, of the same reader and scope
    follows; a break-glass lives until it expires. ``member_id`` maps a hospital address
    (break-glass) to its member id. Oldest first."""
    live: dict[tuple[Any, ...], ActiveConsent] = {}
    windows: list[ActiveConsent] = []
    for e in sorted(events, key=lambda x: (x.block_number, x.log_index)):
        a = e.args
        if e.event in ("ConsentGranted", "ConsentRevoked"):
            key: tuple[Any, ...] = ("grant", a["grantee"], int(a["scopeKind"]), _raw(a["scope"]))
            hospital = None
        elif e.event in ("ClassConsentGranted", "ClassConsentRevoked"):
            hospital = int(a["hospital"])
            key = ("class", hospital, int(a["roles"]), int(a["scopeKind"]), _raw(a["scope"]))
        elif e.event == "BreakGlassOpened":
            record = _raw(a["recordId"])
            windows.append(
                ActiveConsent(
                    kind="break_glass",
                    grantee=a["clinician"],
                    hospital=member_id(a["hospital"]),
                    roles=None,
                    scope_kind=ScopeKind.ALL if record == _ALL_RECORDS else ScopeKind.RECORD,
                    scope=None if record == _ALL_RECORDS else record,
                    granted_at=e.timestamp,
                    expires_at=int(a["expiresAt"]),
                    tx_hash=e.tx_hash,
                )
            )
            continue
        else:
            continue
        live.pop(key, None)
        if e.event.endswith("Granted"):
            live[key] = _consent(key[0], e, hospital)
    found = [*live.values(), *windows]
    return sorted(
        (c for c in found if c.expires_at > now), key=lambda c: (c.granted_at, c.expires_at)
    )
