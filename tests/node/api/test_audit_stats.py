"""GET /audit/stats: reads, denied reads and break-glass per UTC day and per hospital, and
anonymous reads, over the events GET /audit/events lists (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from eth_account import Account

from node.audit.stats import audit_stats, utc_day
from node.chain.abc import ChainClientAPI, ZkGateAPI
from node.chain.models import AuditEvent, ZkAccessEvent
from node.client import ApiError, Scope
from node.flows.audit_trail import AuditFilter, find_audit_events
from storage.abc import AuditMirrorAPI
from tests.node.conftest import RunningNode, start_node
from tests.node.zkaccess.helpers import allow, issue, prover

H1 = "0x" + "11" * 20
H2 = "0x" + "22" * 20
PATIENT = "0x" + "aa" * 20
MIDNIGHT = 1_796_601_600  # 2026-12-07T00:00:00Z


def _event(name: str, ts: int, block: int, **args: Any) -> AuditEvent:
    return AuditEvent(name, "AccessLog", block, ts, bytes(32), 0, {"patient": PATIENT, **args})


def _zk(block: int, ts: int, patient: str = PATIENT) -> ZkAccessEvent:
    return ZkAccessEvent(
        bytes(32), patient, 7, 1, bytes(32), bytes(32), H1, bytes(32), block, 0, ts
    )


def test_counts_per_utc_day_and_hospital() -> None:
    events = [
        _event("AccessRecorded", MIDNIGHT - 1, 1, hospital=H1, granted=True),
        _event("AccessRecorded", MIDNIGHT, 2, hospital=H1, granted=True),
        _event("AccessRecorded", MIDNIGHT + 5, 3, hospital=H2, granted=False),
        _event("BreakGlassOpened", MIDNIGHT + 86_399, 4, hospital=H2, clinician=H1),
        _event("ConsentGranted", MIDNIGHT + 6, 5, grantee=H1),  # not counted
        _event("ZkAccessGranted", MIDNIGHT + 7, 6),
        _event("ZkAccessGranted", MIDNIGHT + 8, 7),
    ]
    s = audit_stats(events)
    assert {d: (c.reads, c.denied, c.break_glass) for d, c in s.days.items()} == {
        "2026-12-06": (1, 0, 0),
        "2026-12-07": (1, 1, 1),
    }
    assert list(s.days) == sorted(s.days)
    assert {h: (c.reads, c.denied, c.break_glass) for h, c in s.hospitals.items()} == {
        H1: (2, 0, 0),
        H2: (0, 1, 1),
    }
    assert s.anonymous_reads == 2
    empty = audit_stats([])
    assert empty.days == {} and empty.hospitals == {} and empty.anonymous_reads == 0


class _Chain:
    def __init__(self, events: list[AuditEvent]) -> None:
        self.events = events

    def audit_events(self, **_filters: object) -> list[AuditEvent]:
        return list(self.events)


class _Gate:
    def __init__(self, events: list[ZkAccessEvent]) -> None:
        self.events = events

    def access_events(self, **_filters: object) -> list[ZkAccessEvent]:
        return list(self.events)


def test_anonymous_reads_join_the_trail_in_chain_order() -> None:
    chain = cast(
        ChainClientAPI,
        _Chain(
            [
                _event("AccessRecorded", 10, 1, hospital=H1, granted=True),
                _event("AccessRecorded", 30, 3, hospital=H1, granted=False),
            ]
        ),
    )
    other = "0x" + "bb" * 20
    gate = cast(ZkGateAPI, _Gate([_zk(2, 20), _zk(4, 40, other)]))
    mirror = cast(AuditMirrorAPI, None)
    found = find_audit_events(
        AuditFilter(patient=PATIENT), chain=chain, mirror=mirror, zk_gate=gate
    )
    assert [(e.event, e.block_number) for e in found] == [
        ("AccessRecorded", 1),
        ("ZkAccessGranted", 2),
        ("AccessRecorded", 3),
    ]
    zk = found[1]
    assert zk.timestamp == 20 and zk.contract == "ZkAccessGate"
    assert set(zk.args) == {"patient", "recordId", "category", "epoch", "relayer"}  # no reader
    only = find_audit_events(
        AuditFilter(event="ZkAccessGranted", since=30), chain=chain, mirror=mirror, zk_gate=gate
    )
    assert [(e.event, e.args["patient"]) for e in only] == [("ZkAccessGranted", other)]
    # an actor filter names someone: anonymous reads have nobody to match
    by_actor = find_audit_events(AuditFilter(actor=H1), chain=chain, mirror=mirror, zk_gate=gate)
    assert {e.event for e in by_actor} == {"AccessRecorded"}
    assert audit_stats(found).anonymous_reads == 1


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    rn = start_node(Path(tmp_path_factory.mktemp("audit-stats")) / "node")
    yield rn
    rn.stop()


def test_stats_over_http(node: RunningNode) -> None:
    patient, other, doc, stranger = (Account.create() for _ in range(4))
    chief = Account.create().address
    with node.client(node.admin_token) as admin:
        hospital_token = admin.create_token("ehr", "hospital")
        auditor = admin.create_token("audit", "auditor")
    with node.client(hospital_token) as hospital, node.client() as public:
        hospital.add_clinician(doc.address, "physician")
        hospital.add_clinician(chief, "emergency")
        rid = hospital.upload(patient.address, b"k 4.1", category="lab")["record_id"]
        public.grant(patient, doc.address, Scope.record(rid))
        doc_s, stranger_s = public.login(doc), public.login(stranger)
        public.read(rid, doc_s)
        public.read(rid, doc_s)
        with pytest.raises(ApiError):
            public.read(rid, stranger_s)
        hospital.break_glass(patient.address, doc.address, "ER", approved_by=chief)
        patient_s, other_s = public.login(patient), public.login(other)
    node.node.access_flusher.flush_now()

    def stats(token: str, **params: object) -> httpx.Response:
        return httpx.get(
            f"{node.url}/audit/stats",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    body = stats(auditor, patient=patient.address).json()
    assert [(d["reads"], d["denied"], d["break_glass"]) for d in body["days"]] == [(2, 1, 1)]
    (day,) = body["days"]
    events = httpx.get(
        f"{node.url}/audit/events",
        params={"patient": patient.address, "event": "AccessRecorded"},
        headers={"Authorization": f"Bearer {auditor}"},
    ).json()
    assert len(events) == 3
    assert day["day"] == utc_day(events[0]["timestamp"])
    assert body["hospitals"] == [
        {
            "hospital": node.node.hospital,
            "name": "Test General",
            "reads": 2,
            "denied": 1,
            "break_glass": 1,
        }
    ]
    assert body["anonymous_reads"] == 0
    # the patient's own view is the same; the time filter applies
    assert stats(patient_s).json() == body
    last = events[-1]["timestamp"]
    later = stats(auditor, patient=patient.address, since=last + 10_000).json()
    assert later == {"days": [], "hospitals": [], "anonymous_reads": 0}
    # nobody else's
    assert stats(other_s).json()["days"] == []
    refused = stats(other_s, patient=patient.address)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert stats(hospital_token).status_code == 403
    assert stats(auditor, since=-1).status_code == 422
    assert stats(auditor, patient="0xnothex").status_code == 400


def test_anonymous_reads_are_counted_for_the_patient(node: RunningNode, tmp_path: Path) -> None:
    """A real zero-knowledge read: the patient's trail shows it, without the reader."""
    patient = Account.create()
    with node.client(node.admin_token) as admin:
        hospital_token = admin.create_token("ehr-zk", "hospital")
    with node.client(hospital_token) as hospital, node.client() as public:
        lab = hospital.upload(patient.address, b"k 4.1", category="lab")["record_id"]
        allow(hospital, "lab", ["nurse"])
        nurse, _ = issue(hospital, "nurse")
        public.grant_class(patient, ["nurse"], Scope.category("lab"))
        read = prover(nurse, tmp_path / "keys").read(public, lab)
        session = public.login(patient)
    headers = {"Authorization": f"Bearer {session}"}
    r = httpx.get(f"{node.url}/audit/events", params={"event": "ZkAccessGranted"}, headers=headers)
    [event] = r.json()
    assert r.headers["X-Total-Count"] == "1" and event["tx_hash"] == read.tx_hash
    assert event["args"]["recordId"] == lab and event["args"]["patient"] == patient.address
    assert event["timestamp"] > 0 and event["contract"] == "ZkAccessGate"
    stats = httpx.get(f"{node.url}/audit/stats", headers=headers).json()
    assert stats["anonymous_reads"] == 1 and stats["days"] == []
