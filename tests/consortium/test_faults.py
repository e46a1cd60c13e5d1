"""One hospital's node killed mid-flow (issue 14): uploads and consents are in flight when
hospital A's worker and then its API process are SIGKILLed; B and C keep serving (a read at
B succeeds while A is down) and relay consents for A's records; A restarts on the same data
and catches up: its audit mirror reaches the chain's head and equals it, its consent cache
honours the grant and the revocation made meanwhile, and every upload it acknowledged is
readable and anchored exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from tests.consortium.harness import Consortium, read_status, until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    c = Consortium.start(3, tmp_path_factory.mktemp("faults"))
    try:
        yield c
    finally:
        c.stop()


def _head(consortium: Consortium) -> int:
    answer = httpx.post(
        consortium.chain.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        timeout=10,
    )
    return int(answer.json()["result"], 16)


def test_a_killed_mid_flow_others_serve_and_a_catches_up(consortium: Consortium) -> None:
    a, b, c = consortium.hospitals
    patient, clinician = Account.create(), Account.create()
    a.admin().add_clinician(clinician.address, "physician")
    b.admin().add_clinician(clinician.address, "physician")
    hospital_a, hospital_b = a.hospital(), b.hospital()
    public_a, public_b = EmrClient(a.url, timeout=30), EmrClient(b.url, timeout=30)

    # Before the fault: two records at A, the clinician may read the first (cached at A).
    kept = hospital_a.upload(patient.address, b"kept", category="lab")["record_id"]
    granted_later = hospital_a.upload(patient.address, b"later", category="lab")["record_id"]
    public_a.grant(patient, clinician.address, Scope.record(kept))
    session_a = public_a.login(clinician)
    assert read_status(public_a, kept, session_a) == (200, b"kept")
    assert read_status(public_a, granted_later, session_a)[0] == 403

    # Uploads in flight at A while its worker and then its API are killed.
    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()

    def upload_loop() -> None:
        client = a.hospital()
        i = 0
        while not stop.is_set():
            content = f"in flight {i}".encode()
            i += 1
            try:
                answer = client.upload(patient.address, content, category="lab")
            except (ApiError, httpx.HTTPError):
                time.sleep(0.05)
                continue
            acknowledged[answer["record_id"]] = content  # 2xx only

    thread = threading.Thread(target=upload_loop, daemon=True)
    thread.start()
    until(lambda: len(acknowledged) >= 3, timeout=60)
    a.kill_worker()
    until(lambda: len(acknowledged) >= 6, timeout=60)  # the API alone still accepts
    a.kill_api()
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert not a.running

    # B and C keep serving: an upload and a consented read at B, an auditor at C.
    own_b = hospital_b.upload(patient.address, b"at B", category="lab")["record_id"]
    public_b.grant(patient, clinician.address, Scope.record(own_b))
    session_b = public_b.login(clinician)
    assert read_status(public_b, own_b, session_b) == (200, b"at B")
    # The patient changes consent on A's records while A is down, relayed by B.
    assert public_b.grant(patient, clinician.address, Scope.record(granted_later))["status"] == (
        "relayed"
    )
    assert public_b.revoke(patient, clinician.address, Scope.record(kept))["status"] == "relayed"
    auditor_c = c.client(c.admin().create_token("auditor-c", "auditor"))
    assert auditor_c.audit_events(patient=patient.address, event="ConsentRevoked")

    # A restarts on the same data and catches up.
    a.restart()
    assert a.running
    hospital_a = a.hospital()
    public_a = EmrClient(a.url, timeout=30)
    # Consent cache: the revocation and the grant made while A was down hold at A.
    until(lambda: read_status(public_a, kept, session_a)[0] == 403, timeout=60, step=0.5)
    assert read_status(public_a, granted_later, session_a) == (200, b"later")
    # Every acknowledged upload is readable (by the hospital) and anchored exactly once.
    assert len(acknowledged) >= 6
    for rid in acknowledged:
        hospital_a.wait_anchored(rid, timeout=120)
    auditor_a = a.client(a.admin().create_token("auditor-a", "auditor"))
    anchored = Counter(
        e["args"]["recordId"]
        for e in auditor_a.audit_events(patient=patient.address, event="RecordAnchored")
    )
    for rid in [*acknowledged, kept, granted_later]:
        assert anchored[rid] == 1, (rid, anchored[rid])
    # The hospital may read its records' content through the same consent check; with a
    # grant for everything the clinician reads every acknowledged upload.
    public_a.grant(patient, clinician.address, Scope.all())
    for rid, content in acknowledged.items():
        assert read_status(public_a, rid, session_a) == (200, content), rid
    # The audit mirror reaches the chain's head and equals the chain, event by event.
    head = _head(consortium)

    def mirror_caught_up() -> dict[str, object] | None:
        verified = auditor_a.verify_mirror()
        return verified if int(verified["cursor"]) >= head else None  # type: ignore[arg-type]

    verified = until(mirror_caught_up, timeout=90, step=0.5)
    assert verified["consistent"], verified  # type: ignore[index]
    # Reads return once their access entry is durable at A; the entries reach the chain a
    # moment later (batched): the mirror follows until it lists exactly the chain's events.

    def trail(source: str) -> list[tuple[int, int, str]]:
        found = auditor_a.audit_events(patient=patient.address, source=source)
        return [(e["block_number"], e["log_index"], e["event"]) for e in found]

    def caught_up() -> list[tuple[int, int, str]] | None:
        chain_trail = trail("chain")
        reads = [e for e in chain_trail if e[2] == "AccessRecorded"]
        # Every read above is on-chain: before the kill 2, after it at least 2, and one
        # per acknowledged upload; and the mirror lists exactly the chain's events.
        if len(reads) < len(acknowledged) + 4:
            return None
        return chain_trail if trail("mirror") == chain_trail else None

    until(caught_up, timeout=90, step=0.5)
    assert auditor_a.verify_mirror()["consistent"]
