"""Dependencies injected into routes: the running node and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from node.api.identity import identify
from node.auth.principal import Principal, Role, TokenPrincipal, WalletPrincipal
from node.exceptions import Forbidden, Unauthenticated
from node.wiring import Node

_bearer = HTTPBearer(
    auto_error=False, description="API token (emr_...) or wallet session (emrs_...)"
)


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


def get_principal(
    request: Request,
    node: NodeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <API token or wallet session>'")
    principal = identify(node, request.scope)
    if principal is None:
        if credentials.credentials.startswith("emrs_"):
            raise Unauthenticated("wallet session is unknown, expired or ended: sign in again")
        raise Unauthenticated("API token is unknown, expired or revoked")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_wallet(principal: PrincipalDep) -> WalletPrincipal:
    if not isinstance(principal, WalletPrincipal):
        raise Forbidden("this endpoint is for people signed in with their wallet (SIWE)")
    return principal


WalletDep = Annotated[WalletPrincipal, Depends(get_wallet)]


def require(*roles: Role) -> object:
    """A dependency admitting API tokens of ``roles`` (admin tokens always pass)."""

    def check(principal: PrincipalDep) -> TokenPrincipal:
        if not isinstance(principal, TokenPrincipal) or not principal.has(*roles):
            names = ", ".join(r.value for r in roles)
            raise Forbidden(f"this endpoint needs an API token with role: {names}")
        return principal

    return Depends(check)


HospitalDep = Annotated[TokenPrincipal, require(Role.HOSPITAL)]
AuditorDep = Annotated[TokenPrincipal, require(Role.AUDITOR)]
AdminDep = Annotated[TokenPrincipal, require(Role.ADMIN)]
