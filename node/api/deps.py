"""Dependencies injected into routes: the services each route uses, and the caller's
identity.

Every service dependency reads one field of the running node (``app.state.node``, built by
``node.wiring``) and is typed by its interface, so a route names exactly what it touches
(``index: IndexDep, chain: ChainDep``) and never the whole ``Node``. They take only the
``Request``, so none of them is an OpenAPI parameter. They are ``async def``: a plain
attribute read, run on the event loop rather than handed to the thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from hsm.abc import KeyStoreAPI
from node.api.identity import identify, identify_cached
from node.audit.abc import AccessLogQueueAPI, KeyAuditLogAPI
from node.auth.principal import Principal, Role, TokenPrincipal, WalletPrincipal
from node.auth.store import AuthStore
from node.chain.abc import ChainClientAPI, ContractSignaturesAPI, RecoverableWalletsAPI
from node.coalescer import Coalescer
from node.consent.abc import AccessDeciderAPI
from node.consent.relay_queue import ConsentRelayQueue
from node.directory import HospitalDirectory
from node.exceptions import Forbidden, Unauthenticated
from node.flows.upload_record import UploadRequest
from node.observability.metrics import MetricsAPI
from node.patients import PatientDirectory
from node.roles.abc import BackgroundWorkersAPI
from node.settings import Settings
from node.throttle import CallerThrottles
from node.zkaccess.service import ZkAccessService
from storage.abc import AuditMirrorAPI, BlobStoreAPI, CacheAPI, HealthCheckAPI, RecordIndexAPI
from storage.models import RecordRow

_bearer = HTTPBearer(
    auto_error=False, description="API token (emr_...) or wallet session (emrs_...)"
)


def _node(request: Request) -> Any:
    return request.app.state.node


async def get_settings(request: Request) -> Settings:
    settings: Settings = _node(request).settings
    return settings


async def get_keys(request: Request) -> KeyStoreAPI:
    keys: KeyStoreAPI = _node(request).keys
    return keys


async def get_blobs(request: Request) -> BlobStoreAPI:
    blobs: BlobStoreAPI = _node(request).blobs
    return blobs


async def get_index(request: Request) -> RecordIndexAPI:
    index: RecordIndexAPI = _node(request).index
    return index


async def get_mirror(request: Request) -> AuditMirrorAPI:
    mirror: AuditMirrorAPI = _node(request).mirror
    return mirror


async def get_cache(request: Request) -> CacheAPI:
    cache: CacheAPI = _node(request).cache
    return cache


async def get_access(request: Request) -> AccessDeciderAPI:
    access: AccessDeciderAPI = _node(request).access
    return access


async def get_chain(request: Request) -> ChainClientAPI:
    chain: ChainClientAPI = _node(request).chain
    return chain


async def get_auth(request: Request) -> AuthStore:
    auth: AuthStore = _node(request).auth
    return auth


async def get_directory(request: Request) -> HospitalDirectory:
    directory: HospitalDirectory = _node(request).directory
    return directory


async def get_patients(request: Request) -> PatientDirectory:
    patients: PatientDirectory = _node(request).patients
    return patients


async def get_access_log(request: Request) -> AccessLogQueueAPI:
    access_log: AccessLogQueueAPI = _node(request).access_log
    return access_log


async def get_relays(request: Request) -> ConsentRelayQueue:
    relays: ConsentRelayQueue = _node(request).relays
    return relays


async def get_throttles(request: Request) -> CallerThrottles | None:
    throttles: CallerThrottles | None = _node(request).throttles
    return throttles


async def get_uploads(request: Request) -> Coalescer[UploadRequest, RecordRow]:
    uploads: Coalescer[UploadRequest, RecordRow] = _node(request).uploads
    return uploads


async def get_key_audit(request: Request) -> KeyAuditLogAPI:
    key_audit: KeyAuditLogAPI = _node(request).key_audit
    return key_audit


async def get_metrics(request: Request) -> MetricsAPI:
    """issue 14: what routes record (counters the flows do not see)."""
    metrics: MetricsAPI = _node(request).metrics
    return metrics


async def get_background(request: Request) -> BackgroundWorkersAPI:
    background: BackgroundWorkersAPI = _node(request).background
    return background


async def get_zk_service(request: Request) -> ZkAccessService | None:
    zk: ZkAccessService | None = _node(request).zk
    return zk


async def get_wallets(request: Request) -> RecoverableWalletsAPI | None:
    wallets: RecoverableWalletsAPI | None = _node(request).wallets
    return wallets


async def get_signatures(request: Request) -> ContractSignaturesAPI | None:
    signatures: ContractSignaturesAPI | None = _node(request).signatures
    return signatures


async def get_health_checks(request: Request) -> dict[str, HealthCheckAPI]:
    checks: dict[str, HealthCheckAPI] = _node(request).health_checks
    return checks


SettingsDep = Annotated[Settings, Depends(get_settings)]
KeysDep = Annotated[KeyStoreAPI, Depends(get_keys)]
BlobsDep = Annotated[BlobStoreAPI, Depends(get_blobs)]
IndexDep = Annotated[RecordIndexAPI, Depends(get_index)]
MirrorDep = Annotated[AuditMirrorAPI, Depends(get_mirror)]
CacheDep = Annotated[CacheAPI, Depends(get_cache)]
AccessDep = Annotated[AccessDeciderAPI, Depends(get_access)]
ChainDep = Annotated[ChainClientAPI, Depends(get_chain)]
AuthDep = Annotated[AuthStore, Depends(get_auth)]
DirectoryDep = Annotated[HospitalDirectory, Depends(get_directory)]
PatientsDep = Annotated[PatientDirectory, Depends(get_patients)]
AccessLogDep = Annotated[AccessLogQueueAPI, Depends(get_access_log)]
RelaysDep = Annotated[ConsentRelayQueue, Depends(get_relays)]
ThrottlesDep = Annotated[CallerThrottles | None, Depends(get_throttles)]
UploadsDep = Annotated[Coalescer[UploadRequest, RecordRow], Depends(get_uploads)]
KeyAuditDep = Annotated[KeyAuditLogAPI, Depends(get_key_audit)]
BackgroundDep = Annotated[BackgroundWorkersAPI, Depends(get_background)]
MetricsDep = Annotated[MetricsAPI, Depends(get_metrics)]
# None when zero-knowledge access is disabled (node/api/routers/zk.py's ZkDep answers 404).
OptionalZkDep = Annotated[ZkAccessService | None, Depends(get_zk_service)]
HealthChecksDep = Annotated[dict[str, HealthCheckAPI], Depends(get_health_checks)]
# None when wallets.enabled is off (node/api/routers/wallets.py answers 404).
OptionalWalletsDep = Annotated[RecoverableWalletsAPI | None, Depends(get_wallets)]
# ERC-1271 checks of contract wallets (sign-in, guardians); None on a hand-built node.
SignaturesDep = Annotated[ContractSignaturesAPI | None, Depends(get_signatures)]


async def get_principal(
    request: Request,
    auth: AuthDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <API token or wallet session>'")
    # A caller the body guard or this process's cache already knows costs no thread hop; a
    # database lookup runs in a worker thread, off the event loop.
    known = identify_cached(auth, request.scope)
    principal = await run_in_threadpool(identify, auth, request.scope) if known is False else known
    if principal is None:
        if credentials.credentials.startswith("emrs_"):
            raise Unauthenticated("wallet session is unknown, expired or ended: sign in again")
        raise Unauthenticated("API token is unknown, expired or revoked")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_wallet(principal: PrincipalDep) -> WalletPrincipal:
    if not isinstance(principal, WalletPrincipal):
        raise Forbidden("this endpoint is for people signed in with their wallet (SIWE)")
    return principal


WalletDep = Annotated[WalletPrincipal, Depends(get_wallet)]


def require(*roles: Role) -> object:
    """A dependency admitting API tokens of ``roles`` (admin tokens always pass)."""

    async def check(principal: PrincipalDep) -> TokenPrincipal:
        if not isinstance(principal, TokenPrincipal) or not principal.has(*roles):
            names = ", ".join(r.value for r in roles)
            raise Forbidden(f"this endpoint needs an API token with role: {names}")
        return principal

    return Depends(check)


HospitalDep = Annotated[TokenPrincipal, require(Role.HOSPITAL)]
AuditorDep = Annotated[TokenPrincipal, require(Role.AUDITOR)]
AdminDep = Annotated[TokenPrincipal, require(Role.ADMIN)]
