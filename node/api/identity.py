"""Who is calling, resolved once per request from the ``Authorization`` header.

Middleware (throttling, body guards) and route dependencies share the answer through the
ASGI scope's state, so a credential is looked up once and every layer sees the same caller.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from node.auth.principal import Principal, WalletPrincipal
from node.auth.store import AuthStore

_STATE_KEY = "emr_principal"
_UNSET = object()


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer credential of raw ASGI headers, or None when there is none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def resolve_credential(auth: AuthStore, token: str) -> Principal | None:
    """The principal a bearer credential stands for; None for an unknown, expired or
    revoked one."""
    if token.startswith("emrs_"):
        address = auth.resolve_session(token)
        return WalletPrincipal(address) if address is not None else None
    if token.startswith("emr_"):
        return auth.resolve_token(token)
    return None


def identify_cached(auth: AuthStore, scope: MutableMapping[str, Any]) -> Principal | bool | None:
    """``identify`` from what is already known (the scope's state, this process's credential
    cache), without touching the database: safe on the event loop. False when only
    ``identify`` (in a worker thread) can tell."""
    state: dict[str, Any] = scope.setdefault("state", {})
    found = state.get(_STATE_KEY, _UNSET)
    if found is not _UNSET:
        return found  # type: ignore[no-any-return]
    token = bearer_token(scope.get("headers", []))
    principal: Principal | None
    if token is None:
        principal = None
    elif token.startswith("emrs_"):
        hit, address = auth.peek_session(token)
        if not hit:
            return False
        principal = WalletPrincipal(address) if address is not None else None
    elif token.startswith("emr_"):
        hit, principal = auth.peek_token(token)
        if not hit:
            return False
    else:
        principal = None
    state[_STATE_KEY] = principal
    return principal


def identify(auth: AuthStore, scope: MutableMapping[str, Any]) -> Principal | None:
    """The caller of an HTTP request (cached in the scope's state); None for anonymous
    callers and for credentials that resolve to no one."""
    state: dict[str, Any] = scope.setdefault("state", {})
    found = state.get(_STATE_KEY, _UNSET)
    if found is _UNSET:
        token = bearer_token(scope.get("headers", []))
        found = resolve_credential(auth, token) if token is not None else None
        state[_STATE_KEY] = found
    return found  # type: ignore[return-value]
