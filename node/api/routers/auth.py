"""Sign-In with Ethereum (EIP-4361) for patients, clinicians and auditors' wallets."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from node.api.deps import AuthDep, ChainDep, SettingsDep, SignaturesDep, WalletDep
from node.api.identity import bearer_token
from node.api.schemas.common import Address, HexBytes, to_bytes
from node.auth import siwe
from node.exceptions import Unauthenticated

router = APIRouter(prefix="/auth", tags=["auth"])


class ChallengeIn(BaseModel):
    address: Address


class ChallengeOut(BaseModel):
    message: str
    nonce: str
    expires_at: int


class LoginIn(BaseModel):
    message: str
    signature: HexBytes


class SessionOut(BaseModel):
    token: str
    address: str
    expires_at: int
    previous_login: int | None = Field(
        description="unix seconds of this address's previous sign-in on this node; null: "
        "this is the first"
    )


@router.post(
    "/challenge", response_model=ChallengeOut, summary="Get a SIWE message to sign (anyone)"
)
def challenge(
    body: ChallengeIn, settings: SettingsDep, chain: ChainDep, auth: AuthDep
) -> ChallengeOut:
    api = settings.api
    now = int(time.time())
    nonce = siwe.new_nonce()
    # From configuration only: the Host header is the caller's to choose (phishing proxies).
    domain, uri = siwe.origin(api.resolved_public_url, api.siwe_domain)
    message = siwe.build_message(
        domain=domain,
        address=body.address,
        uri=uri,
        chain_id=chain.chain_id,
        nonce=nonce,
        issued_at=now,
        expires_at=now + api.challenge_ttl,
    )
    auth.add_challenge(nonce, body.address, message, now + api.challenge_ttl)
    return ChallengeOut(message=message, nonce=nonce, expires_at=now + api.challenge_ttl)


@router.post(
    "/login",
    response_model=SessionOut,
    summary="Exchange a signed SIWE message for a session (anyone)",
    responses={
        401: {
            "description": "unknown, used or expired challenge, another domain, or a signature "
            "not made by the challenged address"
        },
        503: {"description": "a contract wallet (ERC-1271) must be asked and the chain is down"},
    },
)
def login(
    body: LoginIn, settings: SettingsDep, auth: AuthDep, signatures: SignaturesDep
) -> SessionOut:
    nonce = siwe.nonce_of(body.message)
    issued = auth.take_challenge(nonce) if nonce else None
    if issued is None:
        raise Unauthenticated("unknown or already used sign-in nonce: request a new challenge")
    address, message, expires_at = issued
    if message != body.message:
        raise Unauthenticated("the message differs from the challenge this node issued")
    if expires_at < time.time():
        raise Unauthenticated("the sign-in challenge has expired: request a new one")
    api = settings.api  # a challenge issued under another public URL is not for here
    if siwe.domain_of(message) != siwe.origin(api.resolved_public_url, api.siwe_domain)[0]:
        raise Unauthenticated("the challenge names another domain: request a new one")
    # An EOA's own signature, or a contract wallet's yes (ERC-1271; chain down -> 503).
    if not siwe.signed_by(message, to_bytes(body.signature), address, contracts=signatures):
        raise Unauthenticated(f"the signature was not made by {address}")
    token, session_expiry = auth.create_session(address, api.session_ttl)
    previous = auth.record_sign_in(address)
    return SessionOut(
        token=token, address=address, expires_at=session_expiry, previous_login=previous
    )


@router.post(
    "/logout",
    status_code=204,
    summary="End this wallet session, or with everywhere=true every session of the wallet "
    "(the wallet's session); refused on every API process within api.auth_cache_ttl seconds",
    responses={
        401: {"description": "no session, or an unknown, expired or ended one"},
        403: {"description": "an API token: revoke it with POST /admin/tokens/{id}/revoke"},
        422: {"description": "everywhere is not a boolean"},
    },
)
def logout(
    auth: AuthDep,
    wallet: WalletDep,
    request: Request,
    everywhere: Annotated[
        bool, Query(description="end every session of this wallet, on every device")
    ] = False,
) -> Response:
    if everywhere:
        auth.revoke_sessions(wallet.address)
    else:
        token = bearer_token(request.scope["headers"])
        if token is not None:
            auth.end_session(token)
    return Response(status_code=204)
