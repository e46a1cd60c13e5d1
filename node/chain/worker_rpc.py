"""API processes reach the worker's internal endpoint (``node.chain.worker_endpoint``):
chain reads through its ``POST /rpc`` (embedded chain) and the bearer secret they share.

The secret is raw bytes on both sides; on the wire it is ``Authorization: Bearer <hex>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from eth_typing import URI
from requests.adapters import HTTPAdapter
from web3 import HTTPProvider, Web3
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint

from node.chain.external import READ_RETRIED_METHODS

__all__ = ["authorization", "connect_worker_rpc", "worker_session"]

# Read-only: every method the worker's /rpc serves is safe to repeat after a connection
# failure (the worker restarting, or an idle keep-alive connection it closed): the same
# list as for an external chain's node.
_RETRIED_METHODS = READ_RETRIED_METHODS


def authorization(secret: bytes) -> str:
    """The ``Authorization`` header value for ``secret``."""
    return "Bearer " + secret.hex()


def worker_session(secret: bytes, *, pool_size: int = 32) -> requests.Session:
    """A keep-alive ``requests.Session`` sending the bearer secret, with up to
    ``pool_size`` pooled connections (one per concurrent request thread)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["Authorization"] = authorization(secret)
    return session


class _WorkerProvider(HTTPProvider):
    """An HTTPProvider whose endpoint follows the worker role: a standby that takes over
    the lease may listen elsewhere, and the next request goes there."""

    def __init__(self, url_of: Callable[[], str], **kwargs: Any) -> None:
        self._url_of = url_of
        super().__init__(url_of().rstrip("/") + "/rpc", **kwargs)

    @property  # type: ignore[override]
    def endpoint_uri(self) -> URI:
        return URI(self._url_of().rstrip("/") + "/rpc")

    @endpoint_uri.setter
    def endpoint_uri(self, _value: object) -> None:  # HTTPProvider.__init__ sets it
        return


def connect_worker_rpc(
    url: str | Callable[[], str], secret: bytes, *, timeout: float = 30.0
) -> Web3:
    """A ``Web3`` reading the chain through the worker at ``url`` (its base URL, e.g.
    ``http://127.0.0.1:8701``; ``/rpc`` is appended), or at whatever ``url()`` answers at
    each request (``node.roles.locator.WorkerLocator``: the lease holder's address).

    Requests share one pooled keep-alive session; read requests are retried three times
    (0.1 s backoff) when the connection fails. ``eth_chainId`` is cached. Nothing is asked
    here: a worker that is down shows as ``ChainUnavailable`` on the first read.
    Transactions cannot go this way (the worker refuses sends on ``/rpc``): use a
    ``RemoteTransactionSender``.
    """
    provider = _WorkerProvider(
        (lambda: url) if isinstance(url, str) else url,
        request_kwargs={"timeout": timeout},
        session=worker_session(secret),
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
        request_cache_validation_threshold=None,
        exception_retry_configuration=ExceptionRetryConfiguration(
            errors=(requests.ConnectionError,),
            retries=3,
            backoff_factor=0.1,
            method_allowlist=list(_RETRIED_METHODS),
        ),
    )
    return Web3(provider)
