"""AccessLog batches, and the audit trail: every audit event is filterable by patient,
record (or scope) and actor topics."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import (
    ZERO32,
    Chain,
    address_topic,
    domain_of,
    expect_revert,
    grant_tuple,
    namespaced_id,
    sign,
)
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

REASON = keccak(text="emergency")


def _entries(patients: list[str], actors: list[str], n: int) -> list[tuple[Any, ...]]:
    return [
        (
            patients[i % len(patients)],
            keccak(text=f"record-{i % 4}"),
            actors[i % len(actors)],
            i % 3 != 0,  # granted
            (i % 5) if i % 3 != 0 else 0,  # basis
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [1, 10])
def test_record_accesses_emits_one_event_per_entry(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount, clinician: LocalAccount, n: int
) -> None:
    entries = _entries([patient.address, patient2.address], [clinician.address, chain.c], n)
    receipt = chain.send(chain.access_log.functions.recordAccesses(entries), chain.b)
    events = chain.access_log.events.AccessRecorded().process_receipt(receipt, errors=DISCARD)
    assert len(events) == n
    for entry, ev in zip(entries, events, strict=True):
        args = ev["args"]
        assert (
            args["patient"],
            args["recordId"],
            args["actor"],
            args["granted"],
            args["basis"],
        ) == entry
        assert args["hospital"] == chain.b


def test_node_defined_basis_and_empty_batch(chain: Chain, patient: LocalAccount) -> None:
    """The basis is logged as reported (e.g. 5 = the patient's own read); an empty batch is
    a no-op."""
    entry = (patient.address, keccak(text="r"), patient.address, True, 5)
    receipt = chain.send(chain.access_log.functions.recordAccesses([entry]), chain.a)
    ev = chain.access_log.events.AccessRecorded().process_receipt(receipt, errors=DISCARD)
    assert ev[0]["args"]["basis"] == 5
    receipt = chain.send(chain.access_log.functions.recordAccesses([]), chain.a)
    assert receipt["logs"] == []


def test_non_member_cannot_log(chain: Chain, patient: LocalAccount) -> None:
    fn = chain.access_log.functions.recordAccesses([(patient.address, ZERO32, chain.a, True, 1)])
    args = expect_revert(lambda: fn.transact({"from": chain.outsider}), "ConsortiumGatedNotMember")
    assert args == (chain.outsider,)
    assert chain.access_log.functions.consortium().call() == chain.consortium.address


def test_access_events_filterable(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount, clinician: LocalAccount
) -> None:
    entries = _entries([patient.address, patient2.address], [clinician.address, chain.c], 20)
    chain.send(chain.access_log.functions.recordAccesses(entries[:10]), chain.a)
    chain.send(chain.access_log.functions.recordAccesses(entries[10:]), chain.b)
    event = chain.access_log.events.AccessRecorded

    def count(**filters: Any) -> int:
        return len(event.get_logs(from_block=0, argument_filters=filters))

    def expected(pred: Any) -> int:
        return sum(1 for e in entries if pred(e))

    rid = keccak(text="record-1")
    assert count(patient=patient.address) == expected(lambda e: e[0] == patient.address)
    assert count(recordId=rid) == expected(lambda e: e[1] == rid)
    assert count(actor=clinician.address) == expected(lambda e: e[2] == clinician.address)
    assert count(patient=patient2.address, recordId=rid, actor=chain.c) == expected(
        lambda e: e[0] == patient2.address and e[1] == rid and e[2] == chain.c
    )
    assert count(patient=chain.outsider) == 0


def test_every_audit_event_filterable_by_patient_record_and_actor(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount, clinician: LocalAccount
) -> None:
    """RecordAnchored, ConsentGranted, ConsentRevoked, BreakGlassOpened and AccessRecorded all
    index (patient, record-or-scope, actor) as topics 1..3, so one raw topic filter over the
    three contracts finds a patient's whole audit trail."""
    rid = namespaced_id(1, "record-audit")  # anchored by hospital A (member 1)
    p = patient.address
    # RecordAnchored (actor = hospital A)
    chain.send(chain.records.functions.anchorBatch(keccak(text="root"), [rid], [p]), chain.a)
    # ConsentGranted + ConsentRevoked (scope = record id, actor = grantee)
    dom = domain_of(chain.consent)
    now = chain.now()
    g = {
        "patient": p,
        "grantee": clinician.address,
        "scopeKind": 0,
        "scope": rid,
        "expiresAt": now + 3600,
        "nonce": 0,
        "deadline": now + 3600,
    }
    chain.send(
        chain.consent.functions.grantWithSig(grant_tuple(g), sign(patient.key, "Grant", g, dom)),
        chain.outsider,
    )
    r = {k: v for k, v in g.items() if k != "expiresAt"} | {"nonce": 1}
    chain.send(
        chain.consent.functions.revokeWithSig(
            (p, clinician.address, 0, rid, 1, r["deadline"]), sign(patient.key, "Revoke", r, dom)
        ),
        chain.outsider,
    )
    # BreakGlassOpened (actor = clinician)
    chain.send(
        chain.consent.functions.openBreakGlass(p, clinician.address, rid, 600, REASON), chain.b
    )
    # AccessRecorded (actor = clinician)
    chain.send(
        chain.access_log.functions.recordAccesses([(p, rid, clinician.address, True, 4)]), chain.b
    )
    # noise: another patient's events
    chain.send(
        chain.records.functions.anchorBatch(keccak(text="root2"), [rid], [patient2.address]),
        chain.a,
    )

    addresses = [chain.records.address, chain.consent.address, chain.access_log.address]

    def names(topics: list[Any]) -> list[str]:
        logs = chain.w3.eth.get_logs({"fromBlock": 0, "address": addresses, "topics": topics})
        out = []
        for log in logs:
            for contract in (chain.records, chain.consent, chain.access_log):
                for ev in contract.events:
                    if log["topics"][0] == keccak(text=ev.signature):
                        out.append(ev.event_name)
        return out

    audit = [
        "RecordAnchored",
        "ConsentGranted",
        "ConsentRevoked",
        "BreakGlassOpened",
        "AccessRecorded",
    ]
    by_patient = names([None, address_topic(p)])
    assert by_patient == audit
    by_record = names([None, None, "0x" + rid.hex()])
    assert by_record == ["RecordAnchored", *audit[1:], "RecordAnchored"]
    by_actor = names([None, None, None, address_topic(clinician.address)])
    assert by_actor == audit[1:]
    assert names([None, address_topic(p), "0x" + rid.hex(), address_topic(chain.a)]) == [
        "RecordAnchored"
    ]
    assert names([None, address_topic(chain.outsider)]) == []
