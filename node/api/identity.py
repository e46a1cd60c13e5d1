"""Who is calling, resolved once per request from the ``Authorization`` header.

Middleware (throttling, body guards) and route dependencies share the answer through the
ASGI scope's state, so a credential is looked up once and every layer sees the same caller.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from node.auth.principal import Principal, WalletPrincipal
from node.wiring import Node

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


def resolve_credential(node: Node, token: str) -> Principal | None:
    """The principal a bearer credential stands for; None for an unknown, expired or
    revoked one."""
    if token.startswith("emrs_"):
        address = node.auth.resolve_session(token)
        return WalletPrincipal(address) if address is not None else None
    if token.startswith("emr_"):
        return node.auth.resolve_token(token)
    return None


def identify(node: Node, scope: MutableMapping[str, Any]) -> Principal | None:
    """The caller of an HTTP request (cached in the scope's state); None for anonymous
    callers and for credentials that resolve to no one."""
    state: dict[str, Any] = scope.setdefault("state", {})
    found = state.get(_STATE_KEY, _UNSET)
    if found is _UNSET:
        token = bearer_token(scope.get("headers", []))
        found = resolve_credential(node, token) if token is not None else None
        state[_STATE_KEY] = found
    return found  # type: ignore[return-value]
