"""Sign-In with Ethereum (EIP-4361) for patients, clinicians and auditors' wallets."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel

from node.api.deps import NodeDep
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


@router.post(
    "/challenge", response_model=ChallengeOut, summary="Get a SIWE message to sign (anyone)"
)
def challenge(body: ChallengeIn, node: NodeDep, request: Request) -> ChallengeOut:
    api = node.settings.api
    now = int(time.time())
    nonce = siwe.new_nonce()
    domain = api.siwe_domain or request.url.netloc
    message = siwe.build_message(
        domain=domain,
        address=body.address,
        uri=str(request.base_url).rstrip("/"),
        chain_id=node.chain.chain_id,
        nonce=nonce,
        issued_at=now,
        expires_at=now + api.challenge_ttl,
    )
    node.auth.add_challenge(nonce, body.address, message, now + api.challenge_ttl)
    return ChallengeOut(message=message, nonce=nonce, expires_at=now + api.challenge_ttl)


@router.post(
    "/login",
    response_model=SessionOut,
    summary="Exchange a signed SIWE message for a session (anyone)",
)
def login(body: LoginIn, node: NodeDep) -> SessionOut:
    nonce = siwe.nonce_of(body.message)
    issued = node.auth.take_challenge(nonce) if nonce else None
    if issued is None:
        raise Unauthenticated("unknown or already used sign-in nonce: request a new challenge")
    address, message, expires_at = issued
    if message != body.message:
        raise Unauthenticated("the message differs from the challenge this node issued")
    if expires_at < time.time():
        raise Unauthenticated("the sign-in challenge has expired: request a new one")
    if siwe.recover_signer(message, to_bytes(body.signature)) != address:
        raise Unauthenticated(f"the signature was not made by {address}")
    token, session_expiry = node.auth.create_session(address, node.settings.api.session_ttl)
    return SessionOut(token=token, address=address, expires_at=session_expiry)
