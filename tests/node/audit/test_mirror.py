"""The SQL audit mirror follows the chain, answers the same queries, and a tampered mirror
is caught by verification against the chain."""

from __future__ import annotations

import sqlite3

from eth_account import Account

from node.client import EmrClient, Scope
from tests.node.conftest import RunningNode


def _delete_one_mirrored_access(rn: RunningNode) -> None:
    mirror = rn.node.mirror
    if type(mirror).__name__ == "SQLiteAuditMirror":
        with sqlite3.connect(rn.node.settings.resolved_data_dir / "index.sqlite") as conn:
            conn.execute(
                "DELETE FROM mirror_events WHERE rowid = (SELECT MIN(rowid) FROM mirror_events"
                " WHERE event = 'AccessRecorded')"
            )
    else:  # MySQLRecordIndex keeps accesses in audit_events

        def work(cur):  # type: ignore[no-untyped-def]
            cur.execute("DELETE FROM audit_events WHERE event = 'AccessRecorded' LIMIT 1")

        mirror._run(work)  # type: ignore[attr-defined]


def test_mirror_matches_the_chain_and_catches_tampering(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient, doc = Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"ecg", category="cardio")["record_id"]
    hospital.wait_anchored(rid)
    public.grant(patient, doc.address, Scope.record(rid))
    public.read(rid, public.login(doc))
    node = running_node.node
    node.access_flusher.flush_now()
    node.mirror_worker.flush_now()

    from_chain = auditor.audit_events(patient=patient.address)
    from_mirror = auditor.audit_events(patient=patient.address, source="mirror")
    assert [e["event"] for e in from_chain] == [
        "RecordAnchored",
        "ConsentGranted",
        "AccessRecorded",
    ]
    assert from_mirror == from_chain
    assert auditor.audit_events(actor=doc.address, source="mirror") == auditor.audit_events(
        actor=doc.address
    )
    assert auditor.audit_events(record_id=rid, source="mirror") == auditor.audit_events(
        record_id=rid
    )

    report = auditor.verify_mirror()
    assert report["consistent"] and report["checked"] >= 3

    _delete_one_mirrored_access(running_node)
    report = auditor.verify_mirror()
    assert not report["consistent"] and len(report["missing"]) == 1


def test_class_consents_are_in_the_audit_trail_and_the_mirror(
    running_node: RunningNode, auditor: EmrClient, public: EmrClient
) -> None:
    """Auditors see a patient's reader-class grants and revokes like wallet consents, from
    the chain and from the SQL mirror, and the mirror verifies against the chain."""
    patient = Account.create()
    lab = Scope.category("lab")
    public.grant_class(patient, ["nurse"], lab)
    public.revoke_class(patient, ["nurse"], lab)
    running_node.node.mirror_worker.flush_now()

    from_chain = auditor.audit_events(patient=patient.address)
    assert [e["event"] for e in from_chain] == ["ClassConsentGranted", "ClassConsentRevoked"]
    granted = from_chain[0]["args"]
    assert (granted["hospital"], granted["roles"], granted["scopeKind"]) == (0, 2, 1)
    assert auditor.audit_events(patient=patient.address, source="mirror") == from_chain
    # An actor (address) filter never matches a class: its third topic is a hospital id.
    assert auditor.audit_events(actor=patient.address) == []
    report = auditor.verify_mirror()
    assert report["consistent"] and report["checked"] >= 2


def test_verification_ignores_blocks_mirrored_after_its_cursor() -> None:
    """The mirror worker syncs while a verification runs (its chain query is slow): events
    of blocks past the cursor it read are not "extra" (found by the chaos run)."""
    from typing import Any

    from node.audit.mirror import verify_mirror
    from node.chain.models import AuditEvent

    def event(block: int) -> AuditEvent:
        return AuditEvent("AccessRecorded", "AccessLog", block, 1000 + block, b"\x01" * 32, 0)

    class Chain:
        def audit_events(self, *, to_block: int) -> list[AuditEvent]:
            return [event(b) for b in (3, 4, 5, 6) if b <= to_block]

    class Mirror:
        def mirror_cursor(self) -> int:
            return 5  # read first; block 6 is mirrored before mirrored_events runs

        def mirrored_events(self, *, limit: int) -> list[dict[str, Any]]:
            import dataclasses

            return [dataclasses.asdict(event(b)) for b in (3, 4, 5, 6)]

    report = verify_mirror(chain=Chain(), mirror=Mirror())  # type: ignore[arg-type]
    assert report.consistent, report
    assert (report.cursor, report.checked) == (5, 3)
