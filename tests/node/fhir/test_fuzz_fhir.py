"""Fuzzing the FHIR façade's parsers over real HTTP (hypothesis, bounded for CI).

Random JSON and mutations of valid resources (a signed Consent, a DocumentReference, a
transaction Bundle) are posted to /fhir/Consent, PUT /fhir/Consent/{id},
/fhir/DocumentReference and /fhir, and random search parameters sent to the Consent and
AuditEvent searches. The property everywhere: never a 5xx, and every refusal is an
OperationOutcome with at least one issue.

Budget: 100-150 examples a test, derandomized, no example database, one embedded node for
the module.
"""

from __future__ import annotations

import base64
import copy
import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from node.client import Scope
from tests.node.conftest import RunningNode, start_node
from tests.node.fhir.test_consent import consent_resource, hexid
from tests.node.security.helpers import FUZZ

FHIR_JSON = "application/fhir+json"
MANY = settings(FUZZ, max_examples=150)
SOME = settings(FUZZ, max_examples=100)
PATIENT = Account.from_key(b"\x21" * 32)
GRANTEE = Account.from_key(b"\x22" * 32)

# -- strategies -------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "0x",
            "Patient/",
            "Patient/0x" + "0" * 40,
            "DocumentReference/" + "ab" * 32,
            "urn:emr-node:wallet|" + PATIENT.address,
            "deny",
            "permit",
            "active",
            "inactive",
            "2026-13-45T99:99:99Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59+14:00",
            "\x00",
            "a" * 500,
        ]
    ),
)
numbers = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 2**64, 2**256, 10**100]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.floats(allow_nan=False), texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a JSON document (the root excluded)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one to three nodes replaced, deleted or given a stray sibling."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "sibling", "stringify"]))
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "delete":
            del parent[last]
        elif action == "stringify":
            parent[last] = json.dumps(parent[last])
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return doc


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    rn = start_node(tmp_path_factory.mktemp("fhir-fuzz") / "node")
    yield rn
    rn.stop()


@pytest.fixture(scope="module")
def setup(fuzz_node: RunningNode) -> dict[str, Any]:
    """Tokens, a record, a live Consent and valid resources to mutate."""
    with fuzz_node.client(fuzz_node.admin_token) as admin:
        hospital = admin.create_token("fuzz-ehr", "hospital")
        auditor = admin.create_token("fuzz-audit", "auditor")
    with fuzz_node.client(hospital) as h, fuzz_node.client() as public:
        rid = h.upload(PATIENT.address, b"fuzz", category="lab")["record_id"]
        live = public.sign_consent(PATIENT, "Grant", GRANTEE.address, Scope.record(rid))
        # a second signature (next nonce) for the mutations: never relayed unless unchanged
        grant_body = consent_resource(live, record=hexid(rid))
        with httpx.Client(base_url=fuzz_node.url + "/fhir", timeout=60) as http:
            r = http.post(
                "/Consent", content=json.dumps(grant_body), headers={"Content-Type": FHIR_JSON}
            )
            assert r.status_code == 201, r.text
            consent_id = r.json()["id"]
        revoke = public.sign_consent(PATIENT, "Revoke", GRANTEE.address, Scope.record(rid))
        later = public.sign_consent(
            PATIENT,
            "Grant",
            GRANTEE.address,
            Scope.category("lab"),
            nonce=live["message"]["nonce"] + 1,
        )
    data = base64.b64encode(b"potassium 4.1").decode()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{PATIENT.address}"},
        "category": [{"coding": [{"system": "urn:emr-node:category", "code": "lab"}]}],
        "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": data}}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:" + "1" * 8 + "-1111-1111-1111-" + "1" * 12,
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        ],
    }
    return {
        "hospital": hospital,
        "auditor": auditor,
        "consent_id": consent_id,
        "grant": consent_resource(later, category="lab"),
        "revoke": {
            **consent_resource(revoke, primary="Revoke", status="inactive", record=hexid(rid)),
            "id": consent_id,
        },
        "document": document,
        "bundle": bundle,
    }


@pytest.fixture(scope="module")
def http(fuzz_node: RunningNode) -> Iterator[httpx.Client]:
    # No kept-alive connections: a 500 may close one, and the next example must not fail
    # for the previous one's sake.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=fuzz_node.url + "/fhir", timeout=60, limits=limits) as c:
        yield c


def _check(r: httpx.Response, where: str) -> None:
    assert r.status_code < 500, (where, r.status_code, r.text[:400])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith(FHIR_JSON), (where, r.headers)
        body = r.json()
        assert body["resourceType"] == "OperationOutcome", (where, r.text[:400])
        assert body["issue"] and body["issue"][0]["code"], (where, r.text[:400])


def _post(
    http: httpx.Client, path: str, doc: Any, token: str | None = None, method: str = "POST"
) -> httpx.Response:
    headers = {"Content-Type": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http.request(method, path, content=json.dumps(doc), headers=headers)


# -- the tests ----------------------------------------------------------------------------------


@MANY
@given(data=st.data())
def test_mutated_consents(http: httpx.Client, setup: dict[str, Any], data: st.DataObject) -> None:
    doc = data.draw(mutated(setup["grant"]))
    _check(_post(http, "/Consent", doc), "POST /Consent")


@SOME
@given(data=st.data())
def test_mutated_revokes(http: httpx.Client, setup: dict[str, Any], data: st.DataObject) -> None:
    doc = data.draw(mutated(setup["revoke"]))
    path = f"/Consent/{setup['consent_id']}"
    _check(_post(http, path, doc, method="PUT"), "PUT /Consent/{id}")


@st.composite
def typed_data_mutations(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """The signed typed data inside the extension mutated (as JSON, not as a string)."""
    doc = copy.deepcopy(base)
    subs = doc["extension"][0]["extension"]
    typed = json.loads(subs[0]["valueString"])
    subs[0]["valueString"] = json.dumps(draw(mutated(typed)))
    if draw(st.booleans()):
        subs[1]["valueString"] = draw(
            st.one_of(texts, st.text(alphabet="0123456789abcdefx", max_size=140))
        )
    return doc


@SOME
@given(data=st.data())
def test_mutated_signed_typed_data(
    http: httpx.Client, setup: dict[str, Any], data: st.DataObject
) -> None:
    doc = data.draw(typed_data_mutations(setup["grant"]))
    _check(_post(http, "/Consent", doc), "POST /Consent (typed data)")


@SOME
@given(doc=json_values)
def test_random_json_everywhere(http: httpx.Client, setup: dict[str, Any], doc: Any) -> None:
    token = setup["hospital"]
    for path in ("/Consent", "/DocumentReference", ""):
        _check(_post(http, path or "/", doc, token), f"POST /fhir{path}")
    if isinstance(doc, dict):
        for rtype, path in (("Consent", "/Consent"), ("DocumentReference", "/DocumentReference")):
            _check(_post(http, path, {**doc, "resourceType": rtype}, token), path)
        _check(_post(http, "", {**doc, "resourceType": "Bundle"}, token), "POST /fhir")


@SOME
@given(data=st.data())
def test_mutated_documents_and_bundles(
    http: httpx.Client, setup: dict[str, Any], data: st.DataObject
) -> None:
    token = setup["hospital"]
    _check(
        _post(http, "/DocumentReference", data.draw(mutated(setup["document"])), token),
        "POST /DocumentReference",
    )
    _check(_post(http, "", data.draw(mutated(setup["bundle"])), token), "POST /fhir")


_PARAM_NAMES = st.sampled_from(
    [
        "patient",
        "actor",
        "status",
        "period",
        "entity",
        "agent",
        "date",
        "type",
        "subtype",
        "outcome",
        "action",
        "_id",
        "_count",
        "_sort",
        "_getpagesoffset",
        "_format",
        "x",
    ]
)
_PARAM_VALUES = st.one_of(
    texts,
    st.text(alphabet=string.ascii_letters + string.digits + "|/:-.,+", max_size=40),
    st.sampled_from(["ge2020", "lt2030-01-01T00:00:00Z", "eb2020", "-date", "0", "4", "R"]),
)


@SOME
@given(params=st.lists(st.tuples(_PARAM_NAMES, _PARAM_VALUES), max_size=4))
def test_random_search_parameters(
    http: httpx.Client, setup: dict[str, Any], params: list[tuple[str, str]]
) -> None:
    headers = {"Authorization": f"Bearer {setup['auditor']}"}
    for path in ("/Consent", "/AuditEvent"):
        _check(http.get(path, params=params, headers=headers), f"GET /fhir{path}")


@SOME
@given(
    rid=st.one_of(texts, st.from_regex(r"[0-9a-f]{1,40}-[0-9]{1,25}-[0-9]{1,12}", fullmatch=True))
)
def test_random_ids(http: httpx.Client, setup: dict[str, Any], rid: str) -> None:
    headers = {"Authorization": f"Bearer {setup['auditor']}"}
    safe = quote(rid, safe="") or "_"
    for path in (f"/Consent/{safe}", f"/AuditEvent/{safe}"):
        r = http.get(path, headers=headers)
        assert r.status_code < 500, (path, r.status_code, r.text[:300])
