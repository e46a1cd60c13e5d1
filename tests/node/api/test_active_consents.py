"""GET /consents/active: every consent and break-glass window on a patient's records that is
live now; revoked, superseded and expired ones are absent; a wallet sees only its own
(issue 13)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from node.chain.models import AuditEvent
from node.client import Scope
from node.consent.active import active_consents
from node.consent.typed_data import ScopeKind, category_hash
from tests.node.conftest import RunningNode, start_node

PATIENT = "0x" + "aa" * 20
DOC = "0x" + "dd" * 20
HOSPITAL = "0x" + "11" * 20
RECORD = bytes.fromhex("01" * 32)
ZERO = bytes(32)


def _ev(name: str, block: int, **args: Any) -> AuditEvent:
    return AuditEvent(name, "ConsentRegistry", block, 1000 + block, bytes([block]) * 32, 0, args)


def _grant(block: int, expires: int, grantee: str = DOC, scope: bytes = RECORD) -> AuditEvent:
    return _ev(
        "ConsentGranted",
        block,
        patient=PATIENT,
        scope=scope,
        grantee=grantee,
        scopeKind=0,
        expiresAt=expires,
    )


def _revoke(block: int, grantee: str = DOC, scope: bytes = RECORD) -> AuditEvent:
    return _ev("ConsentRevoked", block, patient=PATIENT, scope=scope, grantee=grantee, scopeKind=0)


def test_the_replay_keeps_only_what_is_live() -> None:
    other = "0x" + "ee" * 20
    now = 5000
    events = [
        _grant(1, 9000),
        _revoke(2),  # ends block 1's grant
        _grant(3, 9000),  # granted again: live
        _grant(4, 8000, grantee=other),
        _grant(5, 9500, grantee=other),  # supersedes block 4's
        _grant(6, now, grantee="0x" + "ff" * 20),  # expires now: gone
        _ev(
            "ClassConsentGranted",
            7,
            patient=PATIENT,
            scope=ZERO,
            hospital=0,
            roles=3,
            scopeKind=2,
            expiresAt=9000,
        ),
        _ev(
            "ClassConsentRevoked",
            8,
            patient=PATIENT,
            scope=ZERO,
            hospital=0,
            roles=1,  # another class: the one above stays
            scopeKind=2,
        ),
        _ev(
            "BreakGlassOpened",
            9,
            patient=PATIENT,
            recordId=ZERO,
            clinician=DOC,
            hospital=HOSPITAL,
            expiresAt=now + 1,
            reasonHash=bytes(32),
        ),
        _ev(
            "BreakGlassOpened",
            10,
            patient=PATIENT,
            recordId=RECORD,
            clinician=DOC,
            hospital=HOSPITAL,
            expiresAt=now - 1,  # over
            reasonHash=bytes(32),
        ),
    ]
    found = active_consents(reversed(events), now, {HOSPITAL: 4}.__getitem__)
    assert [(c.kind, c.grantee, c.tx_hash[0]) for c in found] == [
        ("grant", DOC, 3),
        ("grant", other, 5),
        ("class", None, 7),
        ("break_glass", DOC, 9),
    ]
    grant, _, klass, window = found
    assert grant.record_id == RECORD and grant.scope_kind is ScopeKind.RECORD
    assert grant.granted_at == 1003 and grant.expires_at == 9000
    assert klass.roles == 3 and klass.hospital == 0 and klass.scope is None
    assert window.hospital == 4 and window.scope_kind is ScopeKind.ALL and window.record_id is None


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    rn = start_node(Path(tmp_path_factory.mktemp("active-consents")) / "node")
    yield rn
    rn.stop()


def test_active_consents_over_http(node: RunningNode) -> None:
    patient, other = Account.create(), Account.create()
    doc, nurse, brief = Account.create(), Account.create(), Account.create()
    chief = Account.create().address
    with node.client(node.admin_token) as admin:
        hospital_token = admin.create_token("ehr", "hospital")
        auditor = admin.create_token("audit", "auditor")
    with node.client(hospital_token) as hospital, node.client() as public:
        hospital._json(
            "POST",
            "/clinicians",
            json={"address": doc.address, "role": "physician", "name": "Dr Ada Lind"},
        )
        hospital.add_clinician(chief, "emergency")
        rid = hospital.upload(patient.address, b"k 4.1", category="lab")["record_id"]
        public.grant(patient, doc.address, Scope.record(rid))
        public.grant(patient, nurse.address, Scope.category("lab"))
        public.revoke(patient, nurse.address, Scope.category("lab"))  # gone at once
        public.grant_class(patient, ["nurse"], Scope.category("lab"))
        public.grant(patient, node.node.hospital, Scope.all())
        hospital.break_glass(patient.address, doc.address, "ER", approved_by=chief, duration=600)
        # last: a consent that ends a few seconds from now by the chain's clock
        chain = node.node.chain
        soon = chain.block_time(chain.head_block()) + 3
        public.grant(patient, brief.address, Scope.all(), expires_at=soon)
        patient_s, other_s = public.login(patient), public.login(other)

    def active(token: str, who: str | None = patient.address) -> httpx.Response:
        return httpx.get(
            f"{node.url}/consents/active",
            params={"patient": who} if who else {},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    mine = active(patient_s)
    assert mine.status_code == 200, mine.text
    live = mine.json()
    by = {(c["kind"], c["grantee"]): c for c in live}
    assert set(by) == {
        ("grant", doc.address),
        ("grant", brief.address),
        ("class", None),
        ("grant", node.node.hospital),
        ("break_glass", doc.address),
    }
    assert ("grant", nurse.address) not in by  # revoked
    g = by[("grant", doc.address)]
    assert g == {
        "kind": "grant",
        "grantee": doc.address,
        "grantee_name": "Dr Ada Lind",
        "hospital": None,
        "roles": None,
        "scope_kind": "record",
        "scope": rid,
        "record_id": rid,
        "category": None,
        "granted_at": g["granted_at"],
        "expires_at": g["expires_at"],
        "tx_hash": g["tx_hash"],
    }
    assert g["expires_at"] > time.time() and g["tx_hash"].startswith("0x")
    c = by[("class", None)]
    assert c["roles"] == ["nurse"] and c["hospital"] == 0 and c["scope_kind"] == "category"
    assert c["category"] == "lab" and c["scope"] == "0x" + category_hash("lab").hex()
    assert by[("grant", node.node.hospital)]["grantee_name"] == "Test General"
    assert by[("grant", node.node.hospital)]["scope_kind"] == "all"
    bg = by[("break_glass", doc.address)]
    assert bg["hospital"] == 1 and bg["scope_kind"] == "all" and bg["grantee_name"] == "Dr Ada Lind"
    # hospital and auditor tokens see the same
    assert active(hospital_token).json() == live
    assert active(auditor).json() == live
    # another wallet sees nothing of it
    refused = active(other_s)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert active(other_s, other.address).json() == []
    # the short grant expires by the chain's clock: each new block moves it on
    with node.client() as public:
        while chain.block_time(chain.head_block()) < soon:
            public.grant(other, doc.address, Scope.all())
    after = {(x["kind"], x["grantee"]) for x in active(auditor).json()}
    assert after == set(by) - {("grant", brief.address)}
    assert by[("grant", brief.address)]["expires_at"] == soon
    # bad input
    missing = active(patient_s, None)
    assert missing.status_code == 422 and "patient" in missing.json()["detail"]
    assert active(auditor, "0xnothex").status_code == 400
    assert active("emr_" + "x" * 43).status_code == 401
