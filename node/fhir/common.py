"""What every FHIR resource of the façade shares.

- ``FhirJSONResponse``: ``application/fhir+json; fhirVersion=4.0``.
- Errors: ``FhirError`` and every node error become an OperationOutcome with the right
  status, only under /fhir (``FhirRoute`` for errors raised by a route, its dependencies
  or its validation; ``install_fhir_errors`` for the router's own 404/405 there).
- Content negotiation: ``negotiate`` (``_format``, ``Accept``, ``Content-Type``).
- SMART on FHIR: node principals mapped onto SMART scopes (``scopes_of``) and enforced by
  ``require_scope(type, "read"|"write")``.
- Search: ``SearchPage`` (``_count``/``_getpagesoffset``) and ``searchset`` (a Bundle with
  ``self``/``next``/``previous`` links and ``total``).
- The CapabilityStatement registry: each resource module ``register``s what it supports;
  ``capability_statement`` renders exactly that.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from hsm.exceptions import HSMError
from node.api.deps import get_principal
from node.api.errors import _allowed_methods
from node.auth.principal import Principal, Role, TokenPrincipal, WalletPrincipal
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted
from node.exceptions import (
    Conflict,
    ConsentDenied,
    Erased,
    Forbidden,
    InvalidRequest,
    LimitExceeded,
    NodeError,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from storage.exceptions import BackendUnavailable, IntegrityError, RecordNotFound, StorageError
from zk.exceptions import InputError, ProofInvalid, ZKError

log = logging.getLogger(__name__)

T = TypeVar("T")

FHIR_PREFIX = "/fhir"
FHIR_JSON = "application/fhir+json"
FHIR_MEDIA_TYPE = "application/fhir+json; fhirVersion=4.0"
FHIR_VERSION = "4.0.1"
# The identifier system of a patient's wallet address (Patient.identifier, subjects).
WALLET_SYSTEM = "urn:emr-node:wallet"
# Extensions and code systems the node defines (documented in docs/fhir.md).
NODE_URN = "urn:emr-node:fhir"
CATEGORY_SYSTEM = "urn:emr-node:category"


def extension_url(name: str) -> str:
    """The url of an extension the node defines, e.g. ``content-sha256``."""
    return f"{NODE_URN}:StructureDefinition:{name}"


# -- responses ----------------------------------------------------------------------------


class FhirJSONResponse(JSONResponse):
    """A FHIR resource as ``application/fhir+json; fhirVersion=4.0`` (compact JSON)."""

    media_type = FHIR_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def fhir_response(
    resource: dict[str, Any],
    status_code: int = 200,
    *,
    version_id: str | None = None,
    location: str | None = None,
    last_modified: str | None = None,
) -> FhirJSONResponse:
    """A resource with the headers FHIR expects: ``ETag: W/"<versionId>"``, ``Location``
    (on create), ``Last-Modified``."""
    headers: dict[str, str] = {}
    if version_id is not None:
        headers["ETag"] = f'W/"{version_id}"'
    if location is not None:
        headers["Location"] = location
    if last_modified is not None:
        headers["Last-Modified"] = last_modified
    return FhirJSONResponse(resource, status_code=status_code, headers=headers or None)


# -- OperationOutcome -----------------------------------------------------------------------

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: ``code`` from the FHIR issue-type value set."""

    code: str
    diagnostics: str
    severity: Severity = "error"
    expression: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_json() for i in issues]}


def outcome(
    code: str,
    diagnostics: str,
    *,
    severity: Severity = "error",
    expression: Sequence[str] = (),
) -> dict[str, Any]:
    """An OperationOutcome with one issue."""
    return operation_outcome([Issue(code, diagnostics, severity, tuple(expression))])


# The JSON schema of an OperationOutcome as this server writes it (the OpenAPI document).
OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "OperationOutcome",
    "description": "FHIR R4 OperationOutcome: why the request failed",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {
                        "type": "string",
                        "enum": ["fatal", "error", "warning", "information"],
                    },
                    "code": {"type": "string", "description": "FHIR issue-type code"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


class FhirError(Exception):
    """An error answered as an OperationOutcome: HTTP ``status`` and its issues."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        *,
        expression: Sequence[str] = (),
        issues: Sequence[Issue] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issues = list(issues) or [Issue(code, diagnostics, "error", tuple(expression))]
        self.headers = headers


def fhir_path(resource_type: str, loc: Sequence[Any]) -> str:
    """A pydantic error location as a FHIRPath expression: ``DocumentReference.content[0]``."""
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


def validation_issues(err: ValidationError, resource_type: str, *, limit: int = 20) -> list[Issue]:
    """The validator's messages, one issue each; the input values are not echoed (PHI)."""
    issues = []
    for e in err.errors(include_input=False, include_url=False)[:limit]:
        loc = [p for p in e.get("loc", ()) if p != "__root__"]
        msg = str(e.get("msg", "invalid"))
        issues.append(
            Issue("invalid" if loc else "structure", msg, "error", (fhir_path(resource_type, loc),))
        )
    return issues or [Issue("invalid", "invalid resource")]


def invalid_resource(err: ValidationError, resource_type: str) -> FhirError:
    """400 carrying fhir.resources' validation messages."""
    issues = validation_issues(err, resource_type)
    return FhirError(400, "invalid", issues[0].diagnostics, issues=issues)


# node error → (HTTP status, issue type); the statuses are node/api/errors.py's.
_STATUS: list[tuple[type[Exception], int, str]] = [
    (PayloadTooLarge, 413, "too-long"),
    (InvalidRequest, 400, "invalid"),
    (Unauthenticated, 401, "login"),
    (Forbidden, 403, "forbidden"),
    (ConsentDenied, 403, "forbidden"),
    (NotFound, 404, "not-found"),
    (RecordNotFound, 404, "not-found"),
    (Erased, 410, "deleted"),
    (Conflict, 409, "conflict"),
    (LimitExceeded, 429, "throttled"),
    (ProofInvalid, 422, "invalid"),
    (InputError, 400, "invalid"),
    (ContractReverted, 400, "business-rule"),
    (BackendUnavailable, 503, "transient"),
    (ChainUnavailable, 503, "transient"),
    (IntegrityError, 500, "exception"),
]
_HTTP_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 415: "not-supported"}


def error_status(exc: Exception) -> tuple[int, str] | None:
    """(HTTP status, issue type) of a known node error; None for anything else."""
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return None


def error_response(request: Request, exc: Exception) -> FhirJSONResponse:
    """Any exception raised under /fhir as an OperationOutcome."""
    if isinstance(exc, FhirError):
        return FhirJSONResponse(
            operation_outcome(exc.issues), status_code=exc.status, headers=exc.headers
        )
    if isinstance(exc, RequestValidationError):
        issues = [
            Issue(
                "invalid",
                str(e.get("msg", "invalid")),
                "error",
                (".".join(str(p) for p in e.get("loc", ())),),
            )
            for e in exc.errors()[:20]
        ]
        return FhirJSONResponse(operation_outcome(issues), status_code=400)
    if isinstance(exc, ValidationError):  # a model built in a route: fhir.resources' words
        issues = validation_issues(exc, exc.title)
        return FhirJSONResponse(operation_outcome(issues), status_code=400)
    if isinstance(exc, HTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        code = _HTTP_CODES.get(exc.status_code, "processing")
        body = outcome(code, str(exc.detail))
        return FhirJSONResponse(body, status_code=exc.status_code, headers=headers or None)
    known = (
        error_status(exc)
        if isinstance(exc, (NodeError, StorageError, ChainError, HSMError, ZKError))
        else None
    )
    if known is not None:
        status, code = known
        headers: dict[str, str] | None = None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
        if status >= 500:
            log.error("%s on %s %s: %s", code, request.method, request.url.path, exc)
        return FhirJSONResponse(outcome(code, str(exc)), status_code=status, headers=headers)
    from node.observability.logging import current_request_id  # issue 14

    request_id = current_request_id() or uuid.uuid4().hex
    log.error("request %s failed", request_id, exc_info=exc)
    body = outcome("exception", f"internal error (request id {request_id})", severity="fatal")
    return FhirJSONResponse(body, status_code=500)


class FhirRoute(APIRoute):
    """A route whose errors (from the endpoint, its dependencies or FastAPI's request
    validation) are answered as OperationOutcome; the node's own handlers answer every
    other route. Use ``APIRouter(route_class=FhirRoute)``."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every error becomes an OperationOutcome
                return error_response(request, exc)

        return fhir_handler


def is_fhir_path(path: str) -> bool:
    return path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")


def _under_fhir(request: Request) -> bool:
    return is_fhir_path(request.scope.get("path", ""))


# The edge's refusals (node/api/edge.py, before a route runs) by their node error code.
_EDGE_CODES = {
    "unauthenticated": "login",
    "payload_too_large": "too-long",
    "request_timeout": "timeout",
    "invalid_request": "invalid",
}


def refusal_outcome(code: str, detail: str) -> tuple[bytes, bytes]:
    """(content type, body) of an edge refusal under /fhir: an OperationOutcome."""
    body = outcome(_EDGE_CODES.get(code, "processing"), detail)
    return FHIR_MEDIA_TYPE.encode(), json.dumps(body, separators=(",", ":")).encode()


def install_fhir_errors(app: FastAPI) -> None:
    """The router's own answers under /fhir (no such path 404, wrong method 405) as
    OperationOutcome; every other path keeps the node's handler. Call after
    ``install_error_handlers``."""
    previous = app.exception_handlers[HTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        if _under_fhir(request):
            return error_response(request, exc)
        answer: Response = await previous(request, exc)
        return answer

    app.add_exception_handler(HTTPException, http_error)


# -- content negotiation ----------------------------------------------------------------------

_JSON_FORMATS = frozenset({"json", FHIR_JSON, "application/json"})
_XML_FORMATS = frozenset({"xml", "application/fhir+xml", "application/xml", "text/xml"})
_BODY_TYPES = frozenset({FHIR_JSON, "application/json"})


def _media_types(accept: str) -> list[str]:
    return [p.split(";")[0].strip().lower() for p in accept.split(",") if p.strip()]


def accepts_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits FHIR JSON (no header, a wildcard or a JSON type)."""
    if not accept:
        return True
    types = _media_types(accept)
    return not types or any(
        t in ("*/*", "application/*") or t in _JSON_FORMATS or t.endswith("+json") for t in types
    )


def check_format(request: Request, *, raw_ok: bool = False) -> None:
    """``_format`` and ``Accept``: JSON only (406 otherwise; XML is not served). With
    ``raw_ok`` any non-XML ``Accept`` passes (Binary answers in the content's own type)."""
    formats = request.query_params.getlist("_format")
    for value in formats:
        fmt = value.split(";")[0].strip().lower()
        if fmt not in _JSON_FORMATS:
            raise FhirError(406, "not-supported", f"_format={value}: this server speaks JSON only")
    if formats:
        return  # _format overrides Accept (FHIR R4 http.html#mime-type)
    accept = request.headers.get("accept")
    if accepts_json(accept):
        return
    if raw_ok and not any(t in _XML_FORMATS for t in _media_types(accept or "")):
        return
    raise FhirError(406, "not-supported", f"Accept: {accept}: this server speaks {FHIR_JSON} only")


def check_body_type(request: Request) -> None:
    """A request body must be ``application/fhir+json`` (or ``application/json``): 415."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in _BODY_TYPES:
        shown = media or "none"
        raise FhirError(415, "not-supported", f"Content-Type {shown}: send {FHIR_JSON}")


async def negotiate(request: Request) -> None:
    """The dependency every FHIR route takes (Binary reads: ``negotiate_raw``)."""
    check_format(request)
    check_body_type(request)


async def negotiate_raw(request: Request) -> None:
    check_format(request, raw_ok=True)
    check_body_type(request)


NEGOTIATE = Depends(negotiate)
NEGOTIATE_RAW = Depends(negotiate_raw)


def parse_json(body: bytes, resource_type: str) -> dict[str, Any]:
    """A request body as a JSON object of ``resource_type`` (400 otherwise)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise FhirError(400, "structure", f"the body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise FhirError(400, "structure", "the body must be a JSON object (a FHIR resource)")
    found = data.get("resourceType")
    if found != resource_type:
        raise FhirError(
            400,
            "invalid",
            f"resourceType is {found!r}: this endpoint takes {resource_type}",
            expression=("resourceType",),
        )
    return data


# -- SMART on FHIR scopes ---------------------------------------------------------------------

Interaction = Literal["read", "write"]
Context = Literal["system", "patient", "user"]

# A SMART v1 scope ``<context>/<type|*>.<read|write|*>`` granted to each kind of caller.
# The node's credentials are its API tokens (a role) and wallet sessions; a client does not
# request scopes, its credential implies them (docs/fhir.md, "Authorisation").
HOSPITAL_SCOPES = (
    "system/DocumentReference.read",
    "system/DocumentReference.write",
    "system/Binary.write",
    "system/Bundle.write",
    "system/Provenance.read",
    "system/Patient.read",
    "system/Consent.read",
)
AUDITOR_SCOPES = (
    "system/AuditEvent.read",
    "system/Provenance.read",
    "system/DocumentReference.read",
    "system/Patient.read",
    "system/Consent.read",
)
# Wallet sessions: a patient reads its own compartment and signs its consents; a clinician
# (any other wallet) reads content the patient consented to (the read flow decides).
PATIENT_SCOPES = ("patient/*.read", "patient/Consent.write")
USER_SCOPES = ("user/Binary.read", "user/DocumentReference.read")


def scopes_of(principal: Principal) -> tuple[str, ...]:
    """The SMART scopes a node credential carries."""
    if isinstance(principal, WalletPrincipal):
        return PATIENT_SCOPES + USER_SCOPES
    if principal.role is Role.ADMIN:
        return tuple(dict.fromkeys(HOSPITAL_SCOPES + AUDITOR_SCOPES))
    if principal.role is Role.HOSPITAL:
        return HOSPITAL_SCOPES
    if principal.role is Role.AUDITOR:
        return AUDITOR_SCOPES
    return ()


def _covers(scope: str, resource_type: str, interaction: Interaction) -> Context | None:
    context, _, rest = scope.partition("/")
    kind, _, action = rest.partition(".")
    if kind in ("*", resource_type) and action in ("*", interaction):
        return context  # type: ignore[return-value]
    return None


@dataclass(frozen=True)
class FhirCaller:
    """A caller admitted by ``require_scope``: its principal, the scopes its credential
    carries and the context that admitted it (``patient``: its own compartment only)."""

    principal: Principal
    scopes: tuple[str, ...]
    contexts: frozenset[Context] = field(default_factory=frozenset)

    @property
    def wallet(self) -> str | None:
        """The wallet address of a session, None for an API token."""
        return self.principal.address if isinstance(self.principal, WalletPrincipal) else None

    @property
    def is_system(self) -> bool:
        return "system" in self.contexts

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        """Whether the credential carries a scope for ``resource_type.interaction``."""
        return any(_covers(s, resource_type, interaction) for s in self.scopes)

    def require_patient(self, patient: str | None) -> str | None:
        """The patient a search or read is restricted to: a wallet's own address (403 if it
        names another), or ``patient`` unchanged for a system caller."""
        if self.is_system:
            return patient
        own = self.wallet
        if patient is not None and patient != own:
            raise FhirError(403, "forbidden", "a wallet session may see only its own data")
        return own


def require_scope(resource_type: str, interaction: Interaction) -> Any:
    """A dependency admitting callers whose credential carries a SMART scope for
    ``<resource_type>.<interaction>`` (401 without a credential, 403 without the scope)."""

    async def scoped(principal: Annotated[Principal, Depends(get_principal)]) -> FhirCaller:
        scopes = scopes_of(principal)
        contexts = frozenset(
            c for s in scopes if (c := _covers(s, resource_type, interaction)) is not None
        )
        if not contexts:
            who = (
                "this wallet session"
                if isinstance(principal, WalletPrincipal)
                else f"a {principal.role.value} token"
            )
            raise FhirError(
                403,
                "forbidden",
                f"{resource_type}.{interaction} needs a SMART scope "
                f"{_needed(resource_type, interaction)}; {who} carries {' '.join(scopes)}",
            )
        return FhirCaller(principal, scopes, contexts)

    scoped.__name__ = f"scope_{resource_type}_{interaction}"
    return Depends(scoped)


def _needed(resource_type: str, interaction: Interaction) -> str:
    return f"(system|patient|user)/{resource_type}.{interaction}"


def is_token(principal: Principal) -> bool:
    return isinstance(principal, TokenPrincipal)


# -- search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchPage:
    """``_count`` and ``_getpagesoffset`` of a search."""

    count: int
    offset: int

    def of(self, matches: Sequence[T]) -> list[T]:
        """This page's part of all the matches."""
        return list(matches[self.offset : self.offset + self.count])


def search_page(request: Request, default_count: int, max_count: int) -> SearchPage:
    def number(name: str, default: int, low: int, high: int) -> int:
        value = request.query_params.get(name)
        if value is None:
            return default
        try:
            n = int(value)
        except ValueError:
            raise FhirError(
                400, "invalid", f"{name} must be a number", expression=(name,)
            ) from None
        if not low <= n <= high:
            raise FhirError(400, "invalid", f"{name} must be {low}..{high}", expression=(name,))
        return n

    return SearchPage(
        count=number("_count", default_count, 0, max_count),
        offset=number("_getpagesoffset", 0, 0, 2**63 - 1),
    )


def base_url(request: Request) -> str:
    """The FHIR base URL as the caller reached it (``http://host/fhir``)."""
    return str(request.base_url).rstrip("/") + FHIR_PREFIX


def searchset(
    request: Request,
    resource_type: str,
    resources: Sequence[dict[str, Any]],
    *,
    total: int,
    page: SearchPage,
    included: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A search-set Bundle: ``total``, the page's entries (``search.mode`` match, includes
    as ``include``) and ``self``/``first``/``next``/``previous`` links that keep every
    parameter of the search and move ``_getpagesoffset``."""
    base = base_url(request)
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "_getpagesoffset"]
    if not any(k == "_count" for k, _ in params):
        params.append(("_count", str(page.count)))

    def link(relation: str, offset: int) -> dict[str, str]:
        query = urlencode([*params, ("_getpagesoffset", str(offset))])
        return {"relation": relation, "url": f"{base}/{resource_type}?{query}"}

    links = [link("self", page.offset), link("first", 0)]
    if page.count and page.offset + page.count < total:
        links.append(link("next", page.offset + page.count))
    if page.offset > 0 and page.count:
        links.append(link("previous", max(0, page.offset - page.count)))
    entries = [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    entries += [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "include"},
        }
        for r in included
    ]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": uuid.uuid4().hex,
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def param_error(name: str, message: str) -> FhirError:
    """400 for a search parameter's bad value."""
    return FhirError(400, "invalid", f"{name}: {message}", expression=(name,))


def split_token(value: str) -> tuple[str | None, str]:
    """A token search value ``system|code`` as (system, code); ``code`` alone: (None, code);
    ``|code``: ("", code) (no system)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system, code


# -- CapabilityStatement registry ---------------------------------------------------------------


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # FHIR search param type: token, reference, date, string, uri, number
    documentation: str = ""


@dataclass(frozen=True)
class Capability:
    """What the façade supports for one resource type."""

    type: str
    interactions: tuple[str, ...]  # read, vread, search-type, create, history-instance, ...
    search_params: tuple[SearchParam, ...] = ()
    operations: tuple[tuple[str, str], ...] = ()  # (name, canonical definition)
    conditional_create: bool = False
    versioning: str | None = None  # no-version | versioned | versioned-update
    documentation: str = ""
    search_include: tuple[str, ...] = ()


_REGISTRY: dict[str, Capability] = {}
_SYSTEM_INTERACTIONS: dict[str, str] = {}


def register(capability: Capability) -> Capability:
    """Declare a resource type's interactions (each resource module, at import)."""
    _REGISTRY[capability.type] = capability
    return capability


def register_system(interaction: str, documentation: str = "") -> None:
    """Declare a system interaction (``transaction``, ``batch``, ``search-system``)."""
    _SYSTEM_INTERACTIONS[interaction] = documentation


def capabilities() -> dict[str, Capability]:
    return dict(_REGISTRY)


_COMMON_SEARCH = (
    SearchParam("_count", "number", "page size"),
    SearchParam("_getpagesoffset", "number", "index of a page's first match (paging links)"),
)


def capability_statement(base: str, software_version: str, date: str) -> dict[str, Any]:
    """The CapabilityStatement of exactly what is registered."""
    resources = []
    for cap in sorted(_REGISTRY.values(), key=lambda c: c.type):
        entry: dict[str, Any] = {
            "type": cap.type,
            "interaction": [{"code": code} for code in cap.interactions],
        }
        if cap.documentation:
            entry["documentation"] = cap.documentation
        if cap.versioning:
            entry["versioning"] = cap.versioning
            entry["readHistory"] = "history-instance" in cap.interactions
        if "create" in cap.interactions:
            entry["conditionalCreate"] = cap.conditional_create
        if cap.search_include:
            entry["searchInclude"] = list(cap.search_include)
        if "search-type" in cap.interactions:
            params = [*cap.search_params, *_COMMON_SEARCH]
            entry["searchParam"] = [
                {
                    "name": p.name,
                    "type": p.type,
                    **({"documentation": p.documentation} if p.documentation else {}),
                }
                for p in params
            ]
        if cap.operations:
            entry["operation"] = [{"name": n, "definition": d} for n, d in cap.operations]
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "security": {
            "cors": False,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                    "text": "Bearer: an emr-node API token (emr_...) or wallet session (emrs_...)",
                }
            ],
            "description": "Scopes follow from the credential; see docs/fhir.md",
        },
        "resource": resources,
    }
    if _SYSTEM_INTERACTIONS:
        rest["interaction"] = [
            {"code": code, **({"documentation": doc} if doc else {})}
            for code, doc in sorted(_SYSTEM_INTERACTIONS.items())
        ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "emr-node",
        "kind": "instance",
        "software": {"name": "emr-node", "version": software_version},
        "implementation": {"description": "emr-node FHIR R4 façade", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [rest],
    }
