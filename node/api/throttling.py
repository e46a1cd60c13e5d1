"""Token buckets by authenticated caller in front of every route (429 + Retry-After).

The caller is resolved first (``identify``, cached for the routes): a valid API token
draws from its own bucket, sized by its role, and from the hospital-wide bucket; a valid
wallet session from its wallet's bucket; anyone else (no credential, or one that is
unknown, expired, revoked or malformed) from a stricter bucket per client address. A
credential that resolves to no one is never used as a key, so made-up headers neither
escape the anonymous bucket nor drain a real token's. The client address is the TCP peer,
or, when the peer is a configured trusted proxy, the right-most X-Forwarded-For address
that is not a trusted proxy. Health and docs are exempt.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import MutableMapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from node.api.identity import identify
from node.auth.principal import Principal, TokenPrincipal, WalletPrincipal
from node.observability.metrics import NULL_METRICS, MetricsAPI
from node.throttle import CallerThrottles, ThrottleAPI
from node.wiring import Node

_EXEMPT = ("/health", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc")

Network = IPv4Network | IPv6Network
# The emr_throttled_requests_total label of each bucket (buckets_for's "who").
_BUCKET_LABELS = {
    "this API token": "token",
    "this hospital's API tokens": "hospital",
    "this wallet": "wallet",
    "this address": "anonymous",
}


def _ip(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address, proxies: tuple[Network, ...]) -> bool:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in proxies)


def client_address(scope: MutableMapping[str, Any], trusted_proxies: tuple[Network, ...]) -> str:
    """The address requests of this connection are counted against.

    The TCP peer, unless it is a trusted proxy: then the right-most X-Forwarded-For entry
    that is not a trusted proxy (entries left of it were written by the client and prove
    nothing). If every entry is a trusted proxy, the left-most; if the entry found is not
    an IP address, the peer's own address (all such callers share the proxy's bucket).
    """
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    peer_ip = _ip(peer)
    if not trusted_proxies or peer_ip is None or not _trusted(peer_ip, trusted_proxies):
        return peer
    hops = [
        hop.strip()
        for name, value in scope.get("headers", [])
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    hops = [hop for hop in hops if hop]
    if not hops:
        return peer
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            return peer
        if not _trusted(ip, trusted_proxies):
            return str(ip)
    first = _ip(hops[0])
    return str(first) if first is not None else peer


def buckets_for(
    principal: Principal | None, address: str, throttles: CallerThrottles
) -> list[tuple[ThrottleAPI, str, str]]:
    """(limiter, key, who is limited) for each bucket a request draws from, in order."""
    if isinstance(principal, TokenPrincipal):
        return [
            (throttles.tokens[principal.role], f"token:{principal.token_id}", "this API token"),
            (throttles.hospital, "hospital", "this hospital's API tokens"),
        ]
    if isinstance(principal, WalletPrincipal):
        return [(throttles.wallet, f"wallet:{principal.address}", "this wallet")]
    return [(throttles.anonymous, f"ip:{address}", "this address")]


class ThrottleMiddleware:
    """ASGI middleware refusing requests over their caller's rate with 429."""

    def __init__(self, app: ASGIApp, *, node: Node, throttles: CallerThrottles) -> None:
        self.app = app
        self._node = node
        self._throttles = throttles

    def _decide(self, scope: MutableMapping[str, Any]) -> tuple[float, str] | None:
        """None to proceed, or (retry after, who is limited)."""
        principal = identify(self._node.auth, scope)
        address = client_address(scope, self._throttles.trusted_proxies)
        for bucket, key, who in buckets_for(principal, address, self._throttles):
            decision = bucket.acquire(key)
            if not decision.allowed:
                return decision.retry_after, who
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        # One thread hop: the credential lookup and Redis calls block.
        denied = await run_in_threadpool(self._decide, scope)
        if denied is None:
            await self.app(scope, receive, send)
            return
        retry_after, who = denied
        bucket = _BUCKET_LABELS.get(who, "other")
        metrics: MetricsAPI = getattr(self._node, "metrics", NULL_METRICS)
        metrics.count("emr_throttled_requests_total", bucket=bucket)
        retry = max(1, math.ceil(retry_after))
        response = JSONResponse(
            {
                "error": "rate_limited",
                "detail": f"too many requests from {who}; retry in {retry} s",
                "request_id": scope.get("state", {}).get("request_id"),
            },
            status_code=429,
            headers={"Retry-After": str(retry)},
        )
        await response(scope, receive, send)


def install_throttling(app: Any, node: Node) -> None:
    """Throttle every route of ``app`` with ``node.throttles`` (a no-op when they are off)."""
    if node.throttles is not None:
        app.add_middleware(ThrottleMiddleware, node=node, throttles=node.throttles)
