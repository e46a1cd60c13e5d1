"""Fuzzing every parser the node exposes over HTTP (hypothesis, bounded for CI).

Uploads (multipart fields and files), EIP-712 consent bodies (typed data, domains,
signatures), SIWE sign-in, query filters, path ids and zero-knowledge bodies (field
elements, proof words, leaves). The property everywhere: never a 5xx, and a refusal is a
4xx in the node's error shape with a reason. Accepted uploads read back byte for byte.

Budget: ``FUZZ`` (40 examples a test, derandomized, no example database) against one
embedded node for the module.
"""

from __future__ import annotations

import string
from typing import Any

import httpx
import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from node.client import Scope
from tests.node.conftest import RunningNode
from tests.node.security.helpers import FUZZ, Callers
from zk.field import P, R

PATIENT = Account.from_key(b"\x11" * 32)
MORE = settings(FUZZ, max_examples=100)  # for the cheap requests

# -- strategies -------------------------------------------------------------------------

hex32 = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
addresses = st.one_of(
    st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    st.just(PATIENT.address),
    st.just(PATIENT.address.lower()),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 2**64, 2**256, 2**256 - 1, R, P, 10**100]),
)
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.ascii_lowercase + string.digits + "_.-", min_size=1, max_size=70),
    st.sampled_from(["", " ", "0x", "0x" + "0" * 63, "\x00", "%00", "../..", "a" * 300]),
)
scalars = st.one_of(numbers, numbers.map(str), numbers.map(hex), texts, addresses, hex32)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), scalars),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


def _refused_cleanly(r: httpx.Response, where: str) -> None:
    assert r.status_code < 500, (where, r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert body.get("error") and body.get("detail"), (where, r.text[:300])


@pytest.fixture(scope="module")
def http(module_node: RunningNode) -> Any:
    # No kept-alive connections: a 500 may close one, and the next example must not fail
    # for the previous one's sake.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=module_node.url, timeout=60, limits=limits) as c:
        yield c


# -- uploads ---------------------------------------------------------------------------------

upload_fields = st.fixed_dictionaries(
    {},
    optional={
        "patient": st.one_of(addresses, texts),
        "category": st.one_of(st.sampled_from(["lab", "imaging", "note.v2", "x-ray_1"]), texts),
        "content_type": st.one_of(
            st.sampled_from(
                ["text/plain", "application/pdf", "text/plain; charset=utf-8", "image/svg+xml"]
            ),
            texts,
        ),
        "previous_id": st.one_of(hex32, texts),
        "creator": addresses,
    },
)


@FUZZ
@given(
    fields=upload_fields,
    content=st.binary(max_size=2048),
    filename=st.text(max_size=30),
    file_type=st.one_of(st.none(), st.sampled_from(["text/plain", "x/y", "nonsense"])),
)
def test_fuzz_uploads(
    module_node: RunningNode,
    module_callers: Callers,
    http: httpx.Client,
    fields: dict[str, str],
    content: bytes,
    filename: str,
    file_type: str | None,
) -> None:
    file = (
        (filename or "r", content) if file_type is None else (filename or "r", content, file_type)
    )
    r = http.post(
        "/records", data=fields, files={"file": file}, headers=module_callers.headers("hospital")
    )
    _refused_cleanly(r, "POST /records")
    assert r.status_code in (201, 400, 404, 413, 422), r.text
    if r.status_code == 201 and r.json()["patient"] == PATIENT.address:
        session = _patient_session(module_node)
        read = http.get(
            f"/records/{r.json()['record_id']}/content",
            headers={"Authorization": f"Bearer {session}"},
        )
        assert read.status_code == 200 and read.content == content


_SESSIONS: dict[str, str] = {}


def _patient_session(rn: RunningNode) -> str:
    if rn.url not in _SESSIONS:
        with rn.client() as c:
            _SESSIONS[rn.url] = c.login(PATIENT)
    return _SESSIONS[rn.url]


# -- EIP-712 consents ------------------------------------------------------------------------

message_fields = {
    "patient": st.one_of(addresses, scalars),
    "grantee": st.one_of(addresses, scalars),
    "hospital": st.one_of(st.integers(-1, 2**33), scalars),
    "roles": st.one_of(st.integers(-1, 2**17), scalars),
    "scopeKind": st.one_of(st.integers(-1, 3), scalars),
    "scope": st.one_of(hex32, st.just("0x" + "00" * 32), scalars),
    "expiresAt": st.one_of(st.integers(-1, 2**65), scalars),
    "nonce": st.one_of(st.integers(-1, 3), numbers, scalars),
    "deadline": st.one_of(st.integers(-1, 2**65), numbers, scalars),
}
domains = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.just("EMR Consent"), texts, json_values),
            "version": st.one_of(st.just("1"), texts, json_values),
            "chainId": st.one_of(numbers, texts, json_values),
            "verifyingContract": st.one_of(addresses, texts, json_values),
            "salt": hex32,
        },
    ),
    json_values,
)
signatures = st.one_of(
    st.binary(max_size=70).map(lambda b: "0x" + b.hex()), texts, st.integers(), st.none()
)
consent_bodies = st.fixed_dictionaries(
    {},
    optional={
        "message": st.one_of(st.fixed_dictionaries({}, optional=message_fields), json_values),
        "signature": signatures,
        "domain": domains,
    },
)
consent_routes = st.sampled_from(
    ["/consents/grant", "/consents/revoke", "/consents/class-grants", "/consents/class-revokes"]
)


@MORE
@given(route=consent_routes, body=consent_bodies)
def test_fuzz_consent_bodies(http: httpx.Client, route: str, body: dict[str, Any]) -> None:
    r = http.post(route, json=body)
    _refused_cleanly(r, route)
    assert 400 <= r.status_code < 500, (route, r.text)


@FUZZ
@given(
    kind=st.sampled_from(["Grant", "Revoke", "GrantClass", "RevokeClass"]),
    field=st.sampled_from(list(message_fields)),
    value=st.one_of(scalars, json_values),
    domain_change=st.one_of(st.none(), st.tuples(st.sampled_from(["chainId", "name"]), scalars)),
)
def test_fuzz_signed_consents_altered_after_signing(
    module_node: RunningNode,
    http: httpx.Client,
    kind: str,
    field: str,
    value: Any,
    domain_change: tuple[str, Any] | None,
) -> None:
    """Real signatures over real consents, then one field or the domain changed: the
    change is refused (signature, domain or validation), never relayed, never a 5xx."""
    patient = Account.create()
    with module_node.client() as c:
        if kind in ("Grant", "Revoke"):
            body = c.sign_consent(patient, kind, Account.create().address, Scope.all(), nonce=0)
        else:
            body = c.sign_class_consent(patient, kind, ["nurse"], Scope.all(), nonce=0)
    if field in body["message"] and body["message"][field] != value:
        body["message"][field] = value
    elif domain_change is None:
        return  # nothing changed: not an attack
    if domain_change is not None:
        body["domain"] = {**body["domain"], domain_change[0]: domain_change[1]}
    route = {
        "Grant": "/consents/grant",
        "Revoke": "/consents/revoke",
        "GrantClass": "/consents/class-grants",
        "RevokeClass": "/consents/class-revokes",
    }[kind]
    r = http.post(route, json=body)
    _refused_cleanly(r, route)
    if r.status_code == 200:
        # only an equal value spelled differently (an address's case, a number as a
        # string, the domain's own chain id) passes: the chain checked the signature
        assert module_node.node.chain.consent_nonce(patient.address) == 1
    else:
        assert 400 <= r.status_code < 500
        assert module_node.node.chain.consent_nonce(patient.address) == 0


# -- SIWE sign-in ----------------------------------------------------------------------------


@MORE
@given(
    message=st.one_of(texts, json_values, st.text(max_size=400)),
    signature=signatures,
    mutate=st.booleans(),
    junk=st.text(max_size=20),
)
def test_fuzz_sign_in(
    http: httpx.Client, message: Any, signature: Any, mutate: bool, junk: str
) -> None:
    if mutate:  # a real challenge's message, edited
        issued = http.post("/auth/challenge", json={"address": PATIENT.address}).json()
        message = issued["message"].replace("\n", "\n" + junk, 1) if junk else issued["message"]
    r = http.post("/auth/login", json={"message": message, "signature": signature})
    _refused_cleanly(r, "/auth/login")
    assert r.status_code in (401, 422), r.text
    r = http.post("/auth/challenge", json={"address": message})
    _refused_cleanly(r, "/auth/challenge")


# -- query filters and path ids ------------------------------------------------------------

query_values = st.one_of(scalars, st.lists(scalars, min_size=2, max_size=3))
FILTERS = {
    "/records": ("patient", "category", "limit", "offset"),
    "/audit/events": ("patient", "record_id", "actor", "since", "until", "source"),
    "/audit/keys": ("after", "limit", "action", "verify"),
    "/zk/accesses": ("record_id",),
    "/zk/accesses/readers": ("record_id", "from", "to"),
}


@MORE
@given(
    path=st.sampled_from(sorted(FILTERS)),
    data=st.data(),
    who=st.sampled_from(["admin", "auditor", "wallet", "hospital"]),
)
def test_fuzz_query_filters(
    module_callers: Callers, http: httpx.Client, path: str, data: st.DataObject, who: str
) -> None:
    names = FILTERS[path]
    params = data.draw(
        st.dictionaries(st.sampled_from(names), query_values, max_size=len(names)), "params"
    )
    r = http.get(path, params=params, headers=module_callers.headers(who))
    _refused_cleanly(r, f"GET {path} {params}")


PATH_ROUTES = [
    "/records/{}",
    "/records/{}/receipt",
    "/records/{}/content",
    "/consents/nonce/{}",
    "/consents/class-consents/{}",
    "/consents/relays/{}",
    "/governance/proposals/{}",
    "/zk/policies/{}",
    "/zk/records/{}/access",
    "/audit/records/{}/verify",
    "/audit/reasons/{}",
]


@MORE
@given(route=st.sampled_from(PATH_ROUTES), value=st.one_of(scalars.map(str), st.text(max_size=80)))
def test_fuzz_path_ids(module_callers: Callers, http: httpx.Client, route: str, value: str) -> None:
    from urllib.parse import quote

    path = route.format(quote(value, safe="") or "x")
    who = "wallet" if route.endswith("/content") else "admin"
    r = http.get(path, headers=module_callers.headers(who))
    _refused_cleanly(r, f"GET {path}")


# -- zero-knowledge bodies (credentials, revocations; reads: test_zk_read_fuzz.py) ----------

field_values = st.one_of(
    st.integers(-5, P + 5).map(str),
    st.integers(0, 2**300).map(hex),
    st.integers(-5, 2**260),
    texts,
    st.none(),
    st.booleans(),
)
zk_bodies = st.one_of(
    st.tuples(
        st.just("/zk/credentials"),
        st.fixed_dictionaries(
            {},
            optional={
                "credentials": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "identity_commitment": field_values,
                            "clinician": st.one_of(addresses, texts),
                        },
                    ),
                    max_size=3,
                )
            },
        ),
    ),
    st.tuples(st.just("/zk/credentials/revoke"), st.fixed_dictionaries({"leaf": field_values})),
    st.tuples(
        st.just("/zk/credentials/revoke-member"),
        st.fixed_dictionaries({"hospital": st.one_of(addresses, texts)}),
    ),
    st.tuples(
        st.sampled_from(["/zk/policies/lab/proposals", "/zk/policies/%20/proposals"]),
        st.fixed_dictionaries({"roles": st.lists(st.one_of(texts, st.integers()), max_size=4)}),
    ),
)


@FUZZ
@given(case=zk_bodies)
def test_fuzz_zk_bodies(
    module_node: RunningNode, module_callers: Callers, http: httpx.Client, case: tuple
) -> None:
    route, body = case
    r = http.post(route, json=body, headers=module_callers.headers("hospital"))
    _refused_cleanly(r, route)
    if not route.startswith("/zk/policies"):  # a valid policy proposal is a real vote
        assert 400 <= r.status_code < 500, (route, body, r.text)
