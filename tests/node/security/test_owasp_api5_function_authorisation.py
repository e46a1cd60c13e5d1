"""OWASP API5:2023 Broken Function Level Authorization, table-driven over every route.

``ACCESS`` says who may call each route. The tests check that
- the table covers exactly the app's routes and its OpenAPI operations (a new route fails
  here until someone decides who may call it);
- routes declared with a role dependency (``HospitalDep``, ``AuditorDep``, ``AdminDep``,
  ``WalletDep``) admit exactly the principals the table says;
- over real HTTP, every principal outside a route's set is refused: 401 without a
  credential or with a made-up one, 403 with a credential of the wrong kind (a hospital
  token on admin routes, an auditor on uploads, a wallet on hospital routes, ...), each
  with the node's error body.
"""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant

from node.api.deps import get_principal, get_wallet
from node.api.edge import api_routes
from node.api.routers.ops import scraper  # issue 14: /metrics checks its caller inline
from node.auth.principal import Role
from tests.node.conftest import RunningNode
from tests.node.security.helpers import Callers, make_callers

ANYONE = frozenset({"anonymous", "wallet", "hospital", "auditor", "admin"})
WALLET = frozenset({"wallet"})
HOSPITAL = frozenset({"hospital", "admin"})
AUDITOR = frozenset({"auditor", "admin"})
ADMIN = frozenset({"admin"})
METADATA = frozenset({"wallet", "hospital", "auditor", "admin"})  # wallet: its own only

ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/info"): ANYONE,
    ("GET", "/health"): ANYONE,  # details only for admin and auditor tokens
    ("GET", "/healthz"): ANYONE,  # issue 14: liveness
    ("GET", "/readyz"): ANYONE,  # issue 14: readiness
    ("GET", "/metrics"): AUDITOR,  # issue 14: or the configured scrape token (inline check)
    ("POST", "/auth/challenge"): ANYONE,
    ("POST", "/auth/login"): ANYONE,
    ("POST", "/auth/logout"): WALLET,
    ("POST", "/records"): HOSPITAL,
    ("POST", "/records/batch"): HOSPITAL,
    ("GET", "/records"): METADATA,
    ("GET", "/records/{record_id}"): METADATA,
    ("GET", "/records/{record_id}/receipt"): METADATA,
    ("GET", "/records/{record_id}/content"): WALLET,
    ("POST", "/records/{record_id}/erase"): HOSPITAL,
    ("POST", "/patients/{address}/erase"): HOSPITAL,
    ("GET", "/consents/typed-data"): ANYONE,
    ("GET", "/consents/nonce/{patient}"): ANYONE,
    ("POST", "/consents/grant"): ANYONE,  # the patient's signature is the authority
    ("POST", "/consents/revoke"): ANYONE,
    ("POST", "/consents/class-grants"): ANYONE,
    ("POST", "/consents/class-revokes"): ANYONE,
    ("GET", "/consents/class-consents/{patient}"): ANYONE,
    ("GET", "/consents/relays/{relay_id}"): ANYONE,
    ("POST", "/break-glass"): HOSPITAL,
    ("POST", "/wallets"): HOSPITAL,  # the node pays for a patient's recoverable wallet
    ("GET", "/wallets/{address}"): ANYONE,
    ("GET", "/wallets/{address}/typed-data"): ANYONE,
    ("POST", "/wallets/{address}/recovery/approvals"): ANYONE,  # a guardian's signature
    ("POST", "/wallets/{address}/recovery/cancel"): ANYONE,  # the owner's signature
    ("POST", "/wallets/{address}/recovery/finalize"): ANYONE,  # after the delay, anyone
    ("GET", "/me/break-glass"): WALLET,
    ("GET", "/audit/events"): frozenset({"wallet", "auditor", "admin"}),
    ("GET", "/audit/records/{record_id}/verify"): AUDITOR,
    ("POST", "/audit/receipts/verify"): frozenset({"hospital", "auditor", "admin"}),  # any node's
    ("GET", "/audit/reasons/{reason_hash}"): AUDITOR,
    ("GET", "/audit/mirror/verify"): AUDITOR,
    ("GET", "/audit/keys"): AUDITOR,
    ("POST", "/admin/tokens"): ADMIN,
    ("GET", "/admin/tokens"): ADMIN,
    ("POST", "/admin/tokens/{token_id}/revoke"): ADMIN,
    ("POST", "/admin/keys/rotate"): ADMIN,
    ("POST", "/admin/keys/signer/rotate"): ADMIN,
    ("GET", "/admin/keys"): ADMIN,
    ("POST", "/clinicians"): HOSPITAL,
    ("GET", "/clinicians"): HOSPITAL,
    ("GET", "/governance/proposals/{proposal_id}"): ANYONE,
    ("POST", "/governance/proposals/{proposal_id}/vote"): HOSPITAL,
    ("POST", "/governance/proposals"): HOSPITAL,
    ("POST", "/zk/policies/{category}/proposals"): HOSPITAL,
    ("GET", "/zk/policies/{category}"): ANYONE,
    ("GET", "/zk"): ANYONE,
    ("GET", "/zk/proving-key"): ANYONE,
    ("GET", "/zk/tree"): ANYONE,
    ("POST", "/zk/credentials"): HOSPITAL,
    ("POST", "/zk/credentials/revoke"): HOSPITAL,
    ("POST", "/zk/credentials/revoke-member"): HOSPITAL,
    ("GET", "/zk/records/{record_id}/access"): ANYONE,
    ("POST", "/zk/records/{record_id}/read"): ANYONE,  # the proof is the authority
    ("GET", "/zk/accesses"): AUDITOR,
    ("GET", "/zk/accesses/readers"): AUDITOR,
    # issue 12: DICOMweb (H-DICOM)
    ("POST", "/dicomweb/studies"): HOSPITAL,
    ("GET", "/dicomweb/studies"): METADATA,
    ("GET", "/dicomweb/studies/{study}/series"): METADATA,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances"): METADATA,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{sop}"): WALLET,
    # issue 12: FHIR core (H-FHIR-DOCS)
    ("GET", "/fhir/metadata"): ANYONE,
    ("POST", "/fhir/DocumentReference"): HOSPITAL,
    ("GET", "/fhir/DocumentReference"): METADATA,
    ("GET", "/fhir/DocumentReference/{record_id}"): METADATA,  # + a clinician with consent
    ("GET", "/fhir/DocumentReference/{record_id}/_history"): METADATA,
    ("GET", "/fhir/DocumentReference/{record_id}/_history/{version_id}"): METADATA,
    ("POST", "/fhir/Binary"): HOSPITAL,
    ("GET", "/fhir/Binary/{record_id}"): WALLET,
    ("POST", "/fhir"): HOSPITAL,
    ("POST", "/fhir/"): HOSPITAL,
    ("GET", "/fhir/Provenance"): METADATA,
    ("GET", "/fhir/Provenance/{record_id}"): METADATA,
    ("GET", "/fhir/Patient"): METADATA,
    ("GET", "/fhir/Patient/{address}"): METADATA,
    # issue 12: FHIR Consent and AuditEvent (H-FHIR-CONSENT)
    ("POST", "/fhir/Consent"): ANYONE,  # the patient's signature is the authority
    ("PUT", "/fhir/Consent/{id}"): ANYONE,  # a signed Revoke
    ("GET", "/fhir/Consent"): METADATA,  # wallet: its own
    ("GET", "/fhir/Consent/{id}"): METADATA,
    ("GET", "/fhir/AuditEvent"): frozenset({"wallet", "auditor", "admin"}),  # wallet: its own
    ("GET", "/fhir/AuditEvent/{id}"): frozenset({"wallet", "auditor", "admin"}),
    # issue 13: backend for the portal and explorer (HB)
    ("GET", "/audit/events/csv"): frozenset({"wallet", "auditor", "admin"}),  # wallet: its own
    ("GET", "/audit/stats"): frozenset({"wallet", "auditor", "admin"}),  # wallet: its own
    ("GET", "/consents/active"): METADATA,  # wallet: its own
    ("GET", "/clinicians/directory"): METADATA,
}

# Path parameters: well-formed values, so that only authorisation can refuse.
_PATH_VALUES = {
    "record_id": "0x" + "00" * 32,
    "reason_hash": "0x" + "00" * 32,
    "address": Account.create().address,
    "patient": Account.create().address,
    "relay_id": "1",
    "proposal_id": "1",
    "token_id": "0" * 12,
    "category": "lab",
    # issue 12: DICOMweb (H-DICOM)
    "study": "1.2.3",
    "series": "1.2.3.4",
    "sop": "1.2.3.4.5",
    "version_id": "0x" + "00" * 32,  # issue 12: FHIR vread
    # issue 12: FHIR Consent and AuditEvent (H-FHIR-CONSENT)
    "id": "1",
}


@pytest.fixture(scope="module")
def node_and_callers(
    module_node: RunningNode, module_callers: Callers
) -> tuple[RunningNode, Callers]:
    return module_node, module_callers


def _operations(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, route in api_routes(app)
        for method in route.methods or ()
        if method != "HEAD"
    }


def _app(rn: RunningNode) -> FastAPI:
    app = rn.server.config.app
    assert isinstance(app, FastAPI)
    return app


def test_the_table_covers_every_route_and_openapi_operation(module_node: RunningNode) -> None:
    app = _app(module_node)
    routes = _operations(app)
    assert routes == set(ACCESS), (
        f"routes without an access rule: {sorted(routes - set(ACCESS))}; "
        f"rules for missing routes: {sorted(set(ACCESS) - routes)}"
    )
    documented = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented == routes


def _calls(dependant: Dependant) -> list[Any]:
    found = [dependant.call]
    for sub in dependant.dependencies:
        found += _calls(sub)
    return found


def _declared(app: FastAPI) -> dict[tuple[str, str], frozenset[str] | None]:
    """Who a route's dependencies admit: a set when it declares a role or wallet dependency,
    ANYONE when it never resolves a caller, None when it checks the caller inline."""
    out: dict[tuple[str, str], frozenset[str] | None] = {}
    for path, route in api_routes(app):
        calls = _calls(route.dependant)
        admitted: frozenset[str] | None = None
        if get_wallet in calls:
            admitted = WALLET
        for call in calls:
            if not (inspect.isfunction(call) and call.__name__ == "check"):
                continue
            roles = inspect.getclosurevars(call).nonlocals.get("roles")  # deps.require's
            if roles:
                names = {r.value for r in roles if isinstance(r, Role)} | {"admin"}
                admitted = frozenset(names)
        if admitted is None and get_principal not in calls and scraper not in calls:
            admitted = ANYONE
        for method in route.methods or ():
            out[(method, path)] = admitted
    return out


def test_declared_role_dependencies_match_the_table(module_node: RunningNode) -> None:
    declared = _declared(_app(module_node))
    checked = 0
    for op, admitted in declared.items():
        if admitted is None:  # inline checks: the HTTP test below is the judge
            continue
        assert ACCESS[op] == admitted, f"{op}: the route admits {sorted(admitted)}"
        checked += 1
    assert checked >= 40


def _request(http: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    url = path.format(**_PATH_VALUES)
    if method == "GET":
        return http.get(url, headers=headers)
    return http.request(method, url, headers=headers, json={})


@pytest.mark.parametrize(("method", "path"), sorted(ACCESS))
def test_wrong_principals_are_refused(
    node_and_callers: tuple[RunningNode, Callers], method: str, path: str
) -> None:
    rn, callers = node_and_callers
    allowed = ACCESS[(method, path)]
    with httpx.Client(base_url=rn.url, timeout=60) as http:
        for who in ("anonymous", "bogus", "wallet", "hospital", "auditor", "admin"):
            if who in allowed or (who == "bogus" and allowed == ANYONE):
                continue
            r = _request(http, method, path, callers.headers(who))
            expected = 401 if who in ("anonymous", "bogus") else 403
            assert r.status_code == expected, (who, r.status_code, r.text)
            body = r.json()
            if path.startswith("/fhir") and "resourceType" in body:  # issue 12: FHIR errors
                issue = body["issue"][0]
                assert issue["code"] in ("login", "forbidden") and issue["diagnostics"]
                continue
            assert body["error"] in ("unauthenticated", "forbidden") and body["detail"]
        # the positive control: reads by an allowed principal are not refused for who it is
        if method == "GET":
            for who in allowed:
                r = _request(http, method, path, callers.headers(who))
                assert r.status_code not in (401, 403), (who, r.status_code, r.text)


def test_privilege_escalation_by_token_creation(module_node: RunningNode) -> None:
    """A hospital token cannot mint tokens (of any role) nor revoke the admin's."""
    callers = make_callers(module_node)
    with httpx.Client(base_url=module_node.url, timeout=30) as http:
        for role in ("admin", "hospital", "auditor"):
            r = http.post(
                "/admin/tokens",
                json={"name": "x", "role": role},
                headers=callers.headers("hospital"),
            )
            assert r.status_code == 403
        listed = http.get("/admin/tokens", headers=callers.headers("admin")).json()
        admin_ids = [t["id"] for t in listed if t["role"] == "admin"]
        for token_id in admin_ids:
            r = http.post(f"/admin/tokens/{token_id}/revoke", headers=callers.headers("hospital"))
            assert r.status_code == 403
        assert http.get("/admin/keys", headers=callers.headers("admin")).status_code == 200
